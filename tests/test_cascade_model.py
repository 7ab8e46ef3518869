"""The cascade's pure parts: placement, the launch protocol, the restart, the timeline, and
metastability in the discrete-event model (DESIGN.md section 8). No I/O."""

from __future__ import annotations

import random

import pytest

from services.config import Settings
from services.core import cascade, events, launch
from services.core.cascade import Sample, Timeline
from services.core.checker import check, format_report
from services.core.invariants import Invariant
from services.core.leases import check_leases
from services.ec2.api import LaunchRate, requested_az
from services.ec2.placement import Candidate, place
from services.ec2.simulate import SimConfig, simulate
from services.ec2.work import Offer, Policy, ServiceEstimate, WorkQueue
from services.report.cascade import cascade_section, empty_spans, void_rate
from services.runtime.scrape import Samples
from services.tools.ec2 import HostStatus, format_status, host_status


def test_placement_takes_only_a_leased_droplet_with_room_in_the_asked_az() -> None:
    fleet = {
        c.droplet: c
        for c in (
            Candidate("a", "use1-az1", 2, leased=False),
            Candidate("b", "use1-az1", 4, leased=True),
            Candidate("c", "use1-az2", 1, leased=True),
            Candidate("d", "use1-az1", 3, leased=True),
        )
    }
    rng = random.Random(1)
    assert place(fleet, 4, "use1-az1", rng) == fleet["d"]  # b is full, a has no lease
    assert place(fleet, 8, None, rng) == fleet["c"]  # the least filled
    assert place(fleet, 3, "use1-az1", rng) is None
    assert place(fleet, 8, "use1-az4", rng) is None


def test_launch_answers_are_told_apart_by_their_error_code() -> None:
    ok = {"Instances": [{"InstanceId": "i-1"}]}
    assert launch.outcome_of(200, ok) is launch.LaunchOutcome.OK
    for code, outcome in (
        (launch.INSUFFICIENT_CAPACITY, launch.LaunchOutcome.INSUFFICIENT_CAPACITY),
        (launch.REQUEST_LIMIT_EXCEEDED, launch.LaunchOutcome.REQUEST_LIMIT_EXCEEDED),
        (launch.INVALID_PARAMETER, launch.LaunchOutcome.ERROR),
    ):
        assert launch.outcome_of(launch.STATUS[code], launch.error_body(code, "x")) is outcome
    assert launch.outcome_of(200, None) is launch.LaunchOutcome.ERROR
    assert launch.outcome_of(500, ["garbage"]) is launch.LaunchOutcome.ERROR


def test_a_run_instances_body_names_a_known_az_or_none() -> None:
    assert requested_az({}) is None
    assert requested_az({"Placement": {"AvailabilityZone": "use1-az2"}}) == "use1-az2"
    for bad in (
        None,
        [],
        {"Placement": "use1-az1"},
        {"Placement": {"AvailabilityZone": "us-east-1a"}},
    ):
        with pytest.raises(ValueError):
            requested_az(bad)


def test_the_operators_launch_rate_admits_that_many_per_second() -> None:
    rate = LaunchRate()
    assert all(rate.allows(t / 10) for t in range(100))  # off: everything
    rate.set(2.0, 0.0)
    admitted = sum(rate.allows(t / 100) for t in range(1, 1001))  # 10 s, a try every 10 ms
    assert 19 <= admitted <= 21
    with pytest.raises(ValueError):
        rate.set(0.0, 0.0)


def test_a_selective_restart_loses_all_work_and_rebuilds_from_the_droplets() -> None:
    q = WorkQueue(Policy.LEGACY, 2, 1.0, ServiceEstimate(0.25, weight=0.0))
    for d in ("a", "b", "c"):
        q.offer(d, 0.0)
    taken = q.take(5.0)
    assert taken is not None and q.pending("a")
    lost, queued = q.restart(["c", "d"], 6.0)
    assert (lost, queued) == (3, 2)  # two waiting and one in flight lost
    assert [i.droplet for i in q.items] == ["c", "d"]
    assert all(i.deadline_s == 7.0 for i in q.items) and not q.pending("a")
    q.throttle(1.0, 6.0)  # the operators' throttle still applies to the rebuilt queue
    assert q.restart(["a", "b", "c"], 6.0) == (2, 0)
    assert q.offer("a", 7.0) is Offer.ADMITTED


def _timeline(rows: list[tuple[float, bool, float, float]]) -> Timeline:
    t = Timeline()
    for t_s, answers, held, goodput in rows:
        t.add(Sample(t_s, answers, {"leases_held": held, "goodput": goodput}))
    return t


def test_collapse_is_low_goodput_with_dns_answering_and_leases_missing() -> None:
    rows = [(float(s), True, 100.0, 0.0) for s in range(10)]  # healthy: all held, nothing to do
    rows += [(float(s), False, 0.0, 0.0) for s in range(10, 20)]  # the name empty
    rows += [(float(s), True, 5.0, 0.5) for s in range(20, 45)]  # answers, nothing recovers
    rows += [(float(s), True, 100.0, 8.0) for s in range(45, 50)]
    t = _timeline(rows)
    assert cascade.longest_collapse(t, healthy_goodput=10.0, total=100) == (20.0, 24.0)
    assert cascade.dns_outage(t) == (10.0, 20.0)
    assert cascade.recovered_after(t, 20.0, 100) == 25.0
    assert cascade.recovered_after(t, 46.5, 100) == 0.5
    summary = cascade.dwfm_summary(t, 100, 10.0)
    assert summary["collapse"] is True and summary["leases_min_held"] == 0
    # Goodput at 20 % of healthy is recovery under way, not collapse.
    quick = _timeline([(float(s), True, 5.0 * s, 2.0) for s in range(30)])
    assert cascade.longest_collapse(quick, 10.0, 100) is None


def test_launch_success_is_split_at_the_outage_and_the_repair() -> None:
    t = Timeline()
    counts = [(0, 0), (5, 0), (10, 0), (10, 4), (10, 8), (13, 9), (16, 9)]
    for i, (ok, ice) in enumerate(counts):
        t.add(
            Sample(
                float(i),
                i not in (3, 4),
                {"launches_ok": ok, "launches_insufficient_capacity": ice},
            )
        )
    t.mark("dns_repaired", 5.0)
    ratios = cascade.dwfm_summary(t, 1, 1.0)["launch_success_ratio"]
    assert ratios == {"before": 1.0, "during": 0.0, "after": 0.857}


def _model(outage_s: float, policy: Policy) -> tuple[int, int]:
    """(least leases held, leases held at the end) of one DWFM host under the defaults."""
    s = Settings()
    service_s = s.dwfm_work_s + 3.5 * s.dwfm_instance_work_s + 0.02  # + two DynamoDB calls
    config = SimConfig(
        droplets=s.dwfm_droplets,
        workers=s.dwfm_workers,
        service_s=service_s,
        deadline_s=s.dwfm_deadline_s,
        lease_ttl_s=s.lease_ttl_s,
        check_interval_s=s.dwfm_check_interval_s,
        outage=(10.0, 10.0 + outage_s),
        horizon_s=150.0,
    )
    result = simulate(config, policy)
    return min(result.held), result.held[-1]


def test_metastability_a_short_outage_heals_itself_a_long_one_never() -> None:
    s = Settings()
    short_least, short_end = _model(4.4, Policy.LEGACY)
    long_least, long_end = _model(20.0, Policy.LEGACY)
    assert short_least < s.dwfm_droplets and short_end == s.dwfm_droplets  # lost a few, healed
    assert long_least == 0 and long_end < 0.2 * s.dwfm_droplets  # lost all, stays down
    assert _model(20.0, Policy.QUEUE_THROTTLE)[1] == s.dwfm_droplets  # the fix heals it


def test_the_summary_starts_when_the_fleet_was_ready() -> None:
    t = _timeline(
        [
            (0.0, True, 0.0, 0.0),
            (1.0, True, 50.0, 9.0),
            (2.0, True, 100.0, 0.0),
            (3.0, True, 99.0, 0.0),
        ]
    )
    t.mark("ready", 2.0)
    assert cascade.dwfm_summary(t, 100, 10.0)["leases_min_held"] == 99


def _lease_history(regained_after_s: float, operators: bool) -> list[events.Event]:
    """Two hosts of 10 droplets; 8 leases lost; DNS repaired at 100 s; regained later."""
    history: list[events.Event] = [
        events.DwfmStarted(at_ms=0, host=h, droplets=10) for h in ("dwfm-1", "dwfm-2")
    ]
    history += [
        events.LeaseLost(at_ms=50_000 + i, host="dwfm-1", droplet=f"d{i}", az="use1-az1")
        for i in range(8)
    ]
    history.append(
        events.OperatorAction(
            at_ms=100_000, action="dns_repair", target="dynamodb.us-east-1.amazonaws.com"
        )
    )
    back_ms = 100_000 + int(regained_after_s * 1000)
    if operators:
        history.append(events.OperatorAction(at_ms=back_ms - 1, action="restart", target="dwfm-1"))
    history += [
        events.LeaseRegained(
            at_ms=back_ms + i, host="dwfm-1", droplet=f"d{i}", az="use1-az1", attempt=1
        )
        for i in range(8)
    ]
    history.append(events.PlanPublished(at_ms=back_ms + 30_000, generation=1))
    return history


def test_c1_holds_when_leases_come_back_soon_after_the_repair_by_themselves() -> None:
    assert check_leases(_lease_history(12.0, operators=False)) == []
    assert check(_lease_history(12.0, operators=False)) == []


@pytest.mark.parametrize(("after_s", "operators"), [(60.0, False), (12.0, True)])
def test_c1_breaks_when_leases_stay_lost_or_only_the_operators_bring_them_back(
    after_s: float, operators: bool
) -> None:
    (violation,) = check(_lease_history(after_s, operators))
    assert violation.invariant is Invariant.C1
    assert violation.summary.startswith("8 of 20 droplet leases were lost at the DNS repair")
    assert violation.witnesses[0].kind == "operator_action"
    assert "C1 leases recover" in format_report([violation], _lease_history(after_s, operators))


def test_the_report_section_shades_the_empty_name_and_marks_each_operator_action() -> None:
    t = Timeline()
    for s in range(20):
        t.add(
            Sample(
                float(s),
                not 5 <= s < 9,
                {"leases_held": 10.0 if s < 7 else 2.0, "work_void": float(max(0, s - 9) * 3)},
            )
        )
    t.actions = [
        cascade.Action(9.0, "dns_repair", "regional"),
        cascade.Action(15.0, "restart", "dwfm_1", "4 items lost"),
    ]
    assert [(s.start, s.end) for s in empty_spans(t)] == [(5.0, 9.0)]
    assert void_rate(t)[-1] == (19.0, 3.0) and void_rate(t)[0] == (1.0, 0.0)
    html = cascade_section(
        t, {"mode": "legacy", "protections": [], "leases_total": 10, "collapse": True}
    )
    assert html.count('class="fault"') == 2  # the empty stretch, on both charts
    assert html.count('class="operator"') == 4
    assert "+15.0 s  restart dwfm_1 4 items lost" in html
    assert "<th>collapse</th><td>True</td>" in html


def test_ec2_status_says_who_holds_what_and_how_work_is_admitted() -> None:
    legacy = HostStatus(
        "dwfm_1", {"use1-az1": 3, "use1-az2": 0, "use1-az4": 1}, 10, 40, 0.0, None, 0, 12,
        oldest_age_s=37.25,
    )
    throttled = HostStatus(
        "dwfm_2",
        {"use1-az1": 3, "use1-az2": 3, "use1-az4": 4},
        10,
        0,
        2.5,
        20,
        7,
        0,
        operator_throttle_per_s=5.4,
    )
    text = format_status([legacy, throttled])
    assert "off (every item admitted)" in text
    assert "admit <= 20 waiting, operators: 5.4/s; 7 refused" in text
    assert "leases held 14 of 20; void lease work so far 12" in text
    # the oldest waiting item's age, past the deadline in the collapsed host; none waits in the
    # other
    header, first, second = text.splitlines()[:3]
    assert "oldest" in header and "37.2s" in first and "0.0s" in second


def test_ec2_status_reads_each_hosts_gauges() -> None:
    samples = Samples({
        ("dnsrace_dwfm_leases_held", frozenset({("az", "use1-az1")})): 4.0,
        ("dnsrace_dwfm_droplets", frozenset({("az", "use1-az1")})): 6.0,
        ("dnsrace_dwfm_queue_depth", frozenset()): 9.0,
        ("dnsrace_dwfm_oldest_work_age_seconds", frozenset()): 12.5,
        ("dnsrace_dwfm_goodput", frozenset()): 0.4,
    })
    status = host_status("dwfm_2", samples)
    assert (status.held, status.droplets, status.queue_depth) == (4, 6, 9)
    assert status.oldest_age_s == 12.5 and status.admission_limit is None
