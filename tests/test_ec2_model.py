"""The DWFM queue and its discrete-event model: pure, no I/O (DESIGN.md section 8)."""

from __future__ import annotations

import pytest

from services.ec2.simulate import SimConfig, simulate
from services.ec2.work import (
    Offer,
    Outcome,
    Policy,
    ServiceEstimate,
    WorkQueue,
    in_time_capacity,
    judge,
)

# DESIGN.md's worked example: W=16, S=0.2 s, D=3 s.
EXAMPLE = {"workers": 16, "service_s": 0.2, "deadline_s": 3.0, "lease_ttl_s": 1000.0,
           "check_interval_s": 1.0, "horizon_s": 120.0}


def backlog(size: int, policy: Policy) -> tuple[int, float | None, int]:
    """(leases held at the end, second all were held, work spent after a deadline)."""
    r = simulate(SimConfig(droplets=size, start_unleased=size, **EXAMPLE), policy)
    return r.held[-1], r.recovered_at(0.0, share=1.0), r.stats.worked_after_deadline


def queue(policy: Policy, workers: int = 2, deadline_s: float = 1.0,
          service_s: float = 0.25) -> WorkQueue:
    return WorkQueue(policy, workers, deadline_s, ServiceEstimate(service_s, weight=0.0))


def test_in_time_capacity_is_w_d_over_s() -> None:
    assert in_time_capacity(16, 3.0, 0.2) == 240
    with pytest.raises(ValueError):
        in_time_capacity(0, 3.0, 0.2)


def test_legacy_backlog_below_twice_capacity_drains() -> None:
    held, done_at, _ = backlog(400, Policy.LEGACY)
    assert held == 400 and done_at is not None


@pytest.mark.parametrize("size", [480, 600])
def test_legacy_backlog_above_twice_capacity_keeps_only_the_front(size: int) -> None:
    held, done_at, wasted = backlog(size, Policy.LEGACY)
    assert held == 224  # the 14 rounds of 16 that finish inside the first deadline
    assert done_at is None
    assert wasted > 1000  # workers stay busy, on work that can no longer count


@pytest.mark.parametrize("size", [480, 600])
def test_throttle_drains_any_backlog_in_about_b_s_over_w(size: int) -> None:
    held, done_at, wasted = backlog(size, Policy.QUEUE_THROTTLE)
    assert held == size and wasted == 0
    assert done_at is not None and done_at <= size * 0.2 / 16 + 2.0


def test_legacy_admits_everything_and_works_expired_items() -> None:
    q = queue(Policy.LEGACY)
    for d in range(20):
        assert q.offer(f"d{d}", 0.0) is Offer.ADMITTED
    assert q.offer("d0", 0.0) is Offer.ALREADY_QUEUED
    item = q.take(5.0)
    assert item is not None and item.expired(5.0)
    assert q.stats.worked_after_deadline == 1
    outcome = judge(item, written=True, now_s=5.25)
    assert outcome is Outcome.VOID
    assert q.finish(item, outcome, 5.25, 0.25) is Offer.ADMITTED  # queued again at the tail
    assert q.items[-1].droplet == "d0" and q.items[-1].deadline_s == 6.25


def test_throttle_admits_by_queue_size_and_drops_expired_unworked() -> None:
    q = queue(Policy.QUEUE_THROTTLE)  # 2 workers * 1 s / 0.25 s = 8
    assert q.admission_limit == 8
    offers = [q.offer(f"d{d}", 0.0) for d in range(10)]
    assert offers.count(Offer.ADMITTED) == 8 and offers.count(Offer.THROTTLED) == 2
    assert q.take(0.9) is None  # none can finish by its deadline of 1.0: all dropped
    assert q.stats.dropped == 8 and q.stats.worked_after_deadline == 0
    assert not q.pending("d0")  # the next state check offers it again


def test_a_lease_written_in_time_is_held_and_a_failed_call_is_retried() -> None:
    q = queue(Policy.LEGACY)
    q.offer("d", 0.0)
    item = q.take(0.0)
    assert item is not None and q.pending("d")
    assert judge(item, written=True, now_s=0.5) is Outcome.LEASED
    assert q.finish(item, Outcome.LEASED, 0.5, 0.5) is None and not q.pending("d")
    q.offer("d", 1.0)
    item = q.take(1.0)
    assert item is not None
    assert q.finish(item, judge(item, False, 1.1), 1.1, 0.1) is Offer.ADMITTED
    assert q.stats.failed == 1 and q.items[0].attempt == 2


def test_a_restart_loses_the_waiting_queue() -> None:
    q = queue(Policy.LEGACY)
    for d in range(5):
        q.offer(f"d{d}", 0.0)
    assert q.lost() == 5 and len(q) == 0 and not q.pending("d3")


def test_the_operators_throttle_admits_at_most_its_rate_retries_included() -> None:
    q = queue(Policy.LEGACY)
    q.throttle(2.0, now_s=0.0)
    offers = [q.offer(f"d{d}", 1.0) for d in range(5)]  # one second: two items, no more
    assert offers.count(Offer.ADMITTED) == 2 and offers.count(Offer.THROTTLED) == 3
    item = q.take(1.0)
    assert item is not None
    assert q.finish(item, Outcome.VOID, 1.0, 0.25) is Offer.THROTTLED  # not queued again
    assert len(q) == 1 and not q.pending(item.droplet)
    q.throttle(None, now_s=1.0)
    assert all(q.offer(f"e{d}", 1.0) is Offer.ADMITTED for d in range(10))
    with pytest.raises(ValueError, match="> 0"):
        q.throttle(0.0, now_s=1.0)


# The default sizing: 100 droplets a host, 2 workers, S=0.25 s, D=2 s, TTL 8 s, checks every 2 s.
HOST = {"droplets": 100, "workers": 2, "service_s": 0.25, "deadline_s": 2.0,
        "lease_ttl_s": 8.0, "check_interval_s": 2.0, "horizon_s": 130.0}


def outage(seconds: float, policy: Policy) -> tuple[int, int, list[int]]:
    r = simulate(SimConfig(outage=(10.0, 10.0 + seconds), **HOST), policy)
    return min(r.held), r.held[-1], r.goodput


def test_metastability_short_outage_recovers_by_itself_long_one_does_not() -> None:
    lowest, end, _ = outage(4.6, Policy.LEGACY)
    assert 100 - lowest < 2 * in_time_capacity(2, 2.0, 0.25)  # a backlog it can drain
    assert end == 100
    lowest, end, goodput = outage(20.0, Policy.LEGACY)
    assert lowest == 0  # every lease lost
    assert end < 10 and sum(goodput[40:]) == 0  # DynamoDB answers, yet nothing completes


def test_metastability_hinges_on_the_backlog_alone() -> None:
    lowest, end, _ = outage(5.0, Policy.LEGACY)  # a little longer than the short one
    assert 100 - lowest > 2 * in_time_capacity(2, 2.0, 0.25)
    assert end < 95


def test_throttle_recovers_a_long_outage_without_operator() -> None:
    r = simulate(SimConfig(outage=(10.0, 30.0), **HOST), Policy.QUEUE_THROTTLE)
    assert min(r.held) == 0 and r.held[-1] == 100
    trough = r.held.index(0)
    back = next(s for s, held in enumerate(r.held) if s > trough and held >= 95)
    assert back - 30 <= 100 * 0.25 / 2 + 2 * 2.0  # B*S/W plus a state-check period or two
    assert r.stats.worked_after_deadline == 0


def test_bad_model_input_is_refused() -> None:
    with pytest.raises(ValueError):
        SimConfig(droplets=0)
    with pytest.raises(ValueError):
        SimConfig(service_s=-1.0)
