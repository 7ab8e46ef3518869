"""Issue 15's pure models, no I/O: Network Manager's propagation queue, NLB health checks,
AZ failover with and without velocity control, and invariants C2 and C3."""

from __future__ import annotations

import pytest

from services.config import Settings
from services.core.cascade_invariants import (
    C3_MAX_SHARE,
    C3_WINDOW_S,
    check_connectivity,
    check_velocity,
    velocity_budget,
)
from services.core.checker import check
from services.core.events import (
    AzFailedAway,
    InstanceLaunched,
    NetworkPropagated,
    TargetInService,
)
from services.core.invariants import Invariant
from services.ec2.propagation import Admission, PropagationQueue
from services.nlb.failover import Decision, FailoverSettings, Removal, decide
from services.nlb.health import HealthChecker, HealthSettings, TargetState

AZS = ("use1-az1", "use1-az2", "use1-az4")


# --- Network Manager's propagation queue -------------------------------------------------------


def test_propagation_runs_at_its_throughput_in_arrival_order() -> None:
    queue = PropagationQueue(rate_per_s=10)
    for i in range(30):
        assert queue.offer(f"i-{i}", 0.0) is Admission.QUEUED
    done = queue.propagate(1.0)
    assert [p.instance for p in done] == [f"i-{i}" for i in range(10)]
    assert len(queue) == 20 and queue.oldest_age_s(1.0) == pytest.approx(1.0)
    assert len(queue.propagate(3.0)) == 20 and len(queue) == 0


def test_a_surge_leaves_instances_without_connectivity_for_long_in_legacy() -> None:
    queue = PropagationQueue(rate_per_s=5)
    for i in range(200):
        queue.offer(f"i-{i}", 0.0)
    queue.propagate(10.0)
    assert len(queue) == 150 and queue.oldest_age_s(10.0) == pytest.approx(10.0)
    assert queue.throttled == 0


def test_queue_throttle_refuses_launches_while_the_queue_is_long() -> None:
    queue = PropagationQueue(rate_per_s=5, throttle=True, max_wait_s=2.0)
    outcomes = [queue.offer(f"i-{i}", 0.0) for i in range(20)]
    assert outcomes.count(Admission.QUEUED) == 10  # what 5/s propagates within 2 s
    assert queue.throttled == 10
    queue.propagate(2.0)
    assert queue.offer("i-late", 2.0) is Admission.QUEUED  # admitted again once drained
    assert all(p.waited_s <= 2.0 for p in queue.propagate(4.0))


def test_idle_throughput_is_not_banked() -> None:
    queue = PropagationQueue(rate_per_s=10)
    queue.propagate(0.0)
    queue.propagate(100.0)
    for i in range(50):
        queue.offer(f"i-{i}", 100.0)
    assert len(queue.propagate(100.0)) <= 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        PropagationQueue(rate_per_s=0)
    with pytest.raises(ValueError):
        HealthSettings(unhealthy_threshold=0)
    with pytest.raises(ValueError):
        FailoverSettings(max_share=0)


# --- NLB health checks -------------------------------------------------------------------------


def test_legacy_puts_a_target_in_service_at_registration() -> None:
    checker = HealthChecker(HealthSettings())
    moved = checker.register("i-1", AZS[0], 0.0)
    assert moved is not None and moved.now is TargetState.HEALTHY
    assert checker.healthy(AZS[0]) == ["i-1"]


def test_thresholds_decide_in_and_out_of_service() -> None:
    checker = HealthChecker(HealthSettings(legacy_in_service_on_register=False,
                                           healthy_threshold=2, unhealthy_threshold=3))
    checker.register("i-1", AZS[0], 0.0)
    assert checker.report("i-1", True, 1.0) is None
    assert checker.report("i-1", True, 2.0).now is TargetState.HEALTHY  # type: ignore[union-attr]
    assert checker.report("i-1", False, 3.0) is None
    assert checker.report("i-1", False, 4.0) is None
    assert checker.report("i-1", False, 5.0).now is TargetState.UNHEALTHY  # type: ignore[union-attr]
    assert checker.healthy_share(AZS[0]) == 0.0 and checker.healthy_share(AZS[1]) is None


def test_a_flapping_target_never_settles_with_low_thresholds() -> None:
    checker = HealthChecker(HealthSettings(healthy_threshold=1, unhealthy_threshold=1))
    checker.register("i-1", AZS[0], 0.0)
    moves = [checker.report("i-1", t % 2 == 0, float(t)) for t in range(1, 7)]
    assert sum(m is not None for m in moves) == 6


def test_the_checker_reaches_only_its_capacity_each_round() -> None:
    checker = HealthChecker(HealthSettings(checks_per_round=4))
    for i in range(10):
        checker.register(f"i-{i}", AZS[i % 3], 0.0)
    rounds = [checker.due() for _ in range(3)]
    assert all(len(r) == 4 for r in rounds)
    assert {t for r in rounds for t in r} == {f"i-{i}" for i in range(10)}  # fair rotation


# --- AZ failover and velocity control ----------------------------------------------------------


def _shares(*values: float | None) -> dict[str, float | None]:
    return dict(zip(AZS, values, strict=True))


def test_legacy_failover_can_empty_the_name() -> None:
    d = decide(_shares(0.1, 0.2, 0.3), AZS, [], 10.0, FailoverSettings())
    assert d == Decision((), removed=AZS)


def test_velocity_control_removes_one_az_per_window_and_never_the_last() -> None:
    settings = FailoverSettings(velocity_control=True, window_s=60)
    first = decide(_shares(0.1, 0.2, 0.3), AZS, [], 10.0, settings)
    assert first.removed == (AZS[0],) and first.in_name == AZS[1:]
    assert first.held_back == AZS[1:]
    later = decide(_shares(0.1, 0.2, 0.3), first.in_name, [Removal(AZS[0], 10.0)], 30.0, settings)
    assert later.removed == () and later.in_name == AZS[1:]
    after_window = decide(_shares(0.1, 0.2, 0.3), first.in_name, [Removal(AZS[0], 10.0)], 71.0,
                          settings)
    assert len(after_window.in_name) == 1  # one more removed, the last AZ always kept


def test_a_healthy_az_comes_back_and_failover_off_restores_every_az() -> None:
    back = decide(_shares(0.9, 0.1, None), (AZS[2],), [], 5.0, FailoverSettings())
    assert back.in_name == (AZS[0], AZS[2]) and back.restored == (AZS[0],)
    off = decide(_shares(0.0, 0.0, 0.0), (), [], 6.0, FailoverSettings(enabled=False))
    assert off.in_name == AZS and off.removed == ()


# --- C2 and C3 ---------------------------------------------------------------------------------


def test_c2_breaks_when_a_target_is_in_service_before_propagation() -> None:
    events = [
        InstanceLaunched(instance="i-1", az=AZS[0], at_ms=0),
        TargetInService(instance="i-1", az=AZS[0], nlb="api", at_ms=500),
        InstanceLaunched(instance="i-2", az=AZS[0], at_ms=600),
        NetworkPropagated(instance="i-2", az=AZS[0], at_ms=900),
        TargetInService(instance="i-2", az=AZS[0], nlb="api", at_ms=1000),
    ]
    report = check_connectivity(events)
    assert [v.summary.split()[0] for v in report.violations] == ["i-1"]
    assert report.violations[0].invariant is Invariant.C2
    assert [v.invariant for v in check(events)] == [Invariant.C2]


def test_c2_does_not_judge_instances_whose_launch_the_history_lost() -> None:
    events = [TargetInService(instance="i-9", az=AZS[1], nlb="api", at_ms=100)]
    report = check_connectivity(events)
    assert report.violations == [] and report.unknown == 1


def test_c3_breaks_when_failover_removes_beyond_the_velocity_limit() -> None:
    assert velocity_budget(3) == 1 and velocity_budget(1) == 0
    within = [AzFailedAway(nlb="api", az=AZS[0], azs=3, at_ms=0),
              AzFailedAway(nlb="api", az=AZS[1], azs=3, at_ms=61_000)]
    assert check_velocity(within) == []
    beyond = [AzFailedAway(nlb="api", az=AZS[0], azs=3, at_ms=0),
              AzFailedAway(nlb="api", az=AZS[1], azs=3, at_ms=2_000)]
    (violation,) = check_velocity(beyond)
    assert violation.invariant is Invariant.C3 and "2 of 3 AZs" in violation.summary


def test_c3_judges_each_removal_by_the_velocity_limit_configured_when_it_happened() -> None:
    """DNSRACE_VELOCITY_MAX_SHARE=0.67 lets two of three AZs go within the window; a shorter
    DNSRACE_VELOCITY_WINDOW_S lets removals 20 s apart both count as within budget."""
    two_allowed = [AzFailedAway(nlb="api", az=az, azs=3, at_ms=t, max_share=0.67, window_s=60)
                   for az, t in ((AZS[0], 0), (AZS[1], 2_000))]
    assert check_velocity(two_allowed) == []
    third = AzFailedAway(nlb="api", az=AZS[2], azs=3, at_ms=3_000, max_share=1.0, window_s=60)
    (violation,) = check_velocity([*two_allowed, third])      # never the last AZ, at any share
    assert "3 of 3 AZs" in violation.summary and "allows 2" in violation.summary
    short = [AzFailedAway(nlb="api", az=az, azs=3, at_ms=t, window_s=10)
             for az, t in ((AZS[0], 0), (AZS[1], 20_000))]
    assert check_velocity(short) == [] and len(check_velocity(
        [AzFailedAway(nlb="api", az=e.az, azs=3, at_ms=e.at_ms) for e in short])) == 1


def test_failover_holds_back_by_the_configured_share() -> None:
    shares = {AZS[0]: 0.0, AZS[1]: 0.0, AZS[2]: 1.0}
    third = FailoverSettings(velocity_control=True)
    two_thirds = FailoverSettings(velocity_control=True, max_share=0.67)
    held = decide(shares, AZS, [], 0.0, third)
    assert held.removed == (AZS[0],) and held.held_back == (AZS[1],)
    assert decide(shares, AZS, [], 0.0, two_thirds).in_name == (AZS[2],)


def test_the_settings_defaults_are_c3s_defaults() -> None:
    """services.config cannot import the core (layers), so the velocity limit's defaults are
    written twice: an older history without its limit must be judged by the one the NLB uses."""
    s = Settings()
    assert (s.velocity_max_share, s.velocity_window_s) == (C3_MAX_SHARE, C3_WINDOW_S)
    assert (FailoverSettings().max_share, FailoverSettings().window_s) == (C3_MAX_SHARE,
                                                                          C3_WINDOW_S)
