"""The whole outage's stages, found in a run's timeline, beside AWS's post-event summary. Pure.

``dnsrace outage`` samples every process once a second (:mod:`services.core.cascade`). Each
stage of the incident is found from those samples, the run's marks and the operators' actions:
its emulated onset and end in seconds into the run, or None when it did not happen. AWS's times
(PDT, 19-20 October 2025, from the post-event summary; DESIGN.md section 8) stand beside them in
the same order.

Values the samples carry (each a sum over the processes that serve it): ``leases_held``,
``goodput``, ``launches_ok``, ``launches_pending``, ``backlog`` (Network Manager's),
``connected`` (instances listening), ``healthy`` and ``healthy_<az>`` (NLB targets in service),
``targets_failed`` (targets taken out of service by failing checks, cumulative),
``az_records`` (A records of the NLB's name), ``service_ok`` and ``service_failed`` (the service
clients' calls, cumulative).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from services.core.cascade import (
    COLLAPSE_MIN_S,
    RECOVERED_SHARE,
    Sample,
    Timeline,
    dns_outage,
    longest_collapse,
)
from services.core.names import AZS


@dataclass(frozen=True)
class AwsStage:
    key: str
    title: str
    aws_onset: str
    aws_end: str


STAGES: tuple[AwsStage, ...] = (
    AwsStage("race", "the race (DynamoDB's DNS automation)", "Oct 19 11:48 PM", "Oct 19 11:48 PM"),
    AwsStage("empty_name", "regional name empty", "Oct 19 11:48 PM", "Oct 20 2:25 AM"),
    AwsStage("leases_lost", "droplet leases lost", "Oct 19 11:48 PM", "Oct 20 5:28 AM"),
    AwsStage("dns_repair", "DNS repaired by the operators", "Oct 20 2:25 AM", "Oct 20 2:40 AM"),
    AwsStage("dwfm_collapse", "DWFM congestive collapse", "Oct 20 2:25 AM", "Oct 20 4:14 AM"),
    AwsStage("throttle_restarts", "throttle and selective DWFM restarts", "Oct 20 4:14 AM",
             "Oct 20 5:28 AM"),
    AwsStage("launch_surge", "launch surge (pending launches)", "Oct 20 5:28 AM",
             "Oct 20 11:23 AM"),
    AwsStage("propagation_backlog", "Network Manager's propagation backlog", "Oct 20 6:21 AM",
             "Oct 20 10:36 AM"),
    AwsStage("in_service_without_connectivity", "instances in service without connectivity",
             "Oct 20 6:21 AM", "Oct 20 10:36 AM"),
    AwsStage("health_checks_flapping", "NLB health checks flapping", "Oct 20 5:30 AM",
             "Oct 20 2:09 PM"),
    AwsStage("az_failover", "AZ DNS failover removing NLB capacity", "Oct 20 5:30 AM",
             "Oct 20 2:09 PM"),
    AwsStage("failover_disabled", "automatic failover disabled", "Oct 20 9:36 AM",
             "Oct 20 2:09 PM"),
    AwsStage("recovery", "recovery", "Oct 20 10:36 AM", "Oct 20 1:50 PM"),
)
"""AWS's order: the order of the list in issue 15 (onsets at AWS's own times; the NLB's
5:30 AM onset precedes Network Manager's 6:21 AM in the summary, whose backlog grew from the
surge at 5:28 AM)."""

ORDER = tuple(s.key for s in STAGES)

BACKLOG_SECONDS = 2.0
"""Network Manager is behind once its backlog is this many seconds of its throughput."""
WITHOUT_CONNECTIVITY_MIN = 10
"""Targets in service beyond instances listening: more than propagation's usual lag."""
SERVICE_OK_SHARE = 0.99


@dataclass(frozen=True)
class Stage:
    key: str
    onset_s: float | None
    end_s: float | None

    @property
    def happened(self) -> bool:
        return self.onset_s is not None


@dataclass(frozen=True)
class RunFacts:
    """What the stage finder needs besides the timeline."""

    leases_total: int
    healthy_goodput: float
    launch_rate: float
    netmgr_rate: float


def first(samples: list[Sample], cond: Callable[[Sample], bool],
          after: float | None = None) -> float | None:
    lo = float("-inf") if after is None else after
    return next((s.t_s for s in samples if s.t_s >= lo and cond(s)), None)


def rates(samples: list[Sample], key: str) -> list[tuple[Sample, float]]:
    """Each sample with the per-second increase of a cumulative ``key`` since the one before."""
    out = []
    for before, s in itertools.pairwise(samples):
        dt = s.t_s - before.t_s
        out.append((s, (s.get(key) - before.get(key)) / dt if dt > 0 else 0.0))
    return out


def action_times(timeline: Timeline, action: str, detail: str | None = None) -> list[float]:
    return [a.t_s for a in timeline.actions
            if a.action == action and (detail is None or a.detail == detail)]


def in_service_without_connectivity(s: Sample) -> float:
    """At least this many targets are in service without connectivity (in service beyond the
    instances listening); 0 when a scrape missed the NLB or an AZ's instances."""
    if "connected" not in s.values or "healthy" not in s.values:
        return 0.0
    return s.get("healthy") - s.get("connected")


def find_stages(timeline: Timeline, facts: RunFacts) -> list[Stage]:
    """Every stage of :data:`STAGES` as this run showed it (None where it did not happen)."""
    samples = timeline.samples
    race = timeline.marks.get("race")
    found: dict[str, tuple[float | None, float | None]] = {}
    outage = dns_outage(timeline)
    found["empty_name"] = outage if outage else (None, None)
    found["race"] = (race, outage[0] if outage else race)
    recovered = RECOVERED_SHARE * facts.leases_total
    lost = first(samples, lambda s: s.get("leases_held") < recovered, race)
    back = first(samples, lambda s: s.get("leases_held") >= recovered, lost) if lost else None
    found["leases_lost"] = (lost, back)
    repair = action_times(timeline, "dns_repair")
    if repair:
        # The repair's writes land before the run logs the action: its onset is whichever
        # came first, its end the first sample answering after it.
        began = min(repair[0], outage[1]) if outage else repair[0]
        found["dns_repair"] = (began, first(samples, lambda s: s.dns_answers, began))
    else:
        found["dns_repair"] = (None, None)
    collapse = longest_collapse(timeline, facts.healthy_goodput, facts.leases_total)
    if collapse is not None and collapse[1] >= COLLAPSE_MIN_S:
        found["dwfm_collapse"] = (collapse[0], collapse[0] + collapse[1])
    else:
        found["dwfm_collapse"] = (None, None)
    procedure = action_times(timeline, "throttle") + action_times(timeline, "restart")
    found["throttle_restarts"] = (min(procedure), back) if procedure else (None, None)
    # What follows the DNS repair: the surge of launches once leases come back, and what it
    # does to Network Manager and the NLB (earlier blips of failover are not this cascade).
    surge_from = found["dns_repair"][0] if repair else race
    surge = next((s.t_s for (s, r), before in zip(rates(samples, "launches_ok"), samples,
                                                  strict=False)
                  if surge_from is not None and s.t_s >= surge_from
                  and r > 1.5 * facts.launch_rate and before.get("launches_pending") > 0), None)
    found["launch_surge"] = (surge, first(samples, lambda s: s.get("launches_pending") == 0,
                                          surge) if surge is not None else None)
    behind = BACKLOG_SECONDS * facts.netmgr_rate
    backlog = first(samples, lambda s: s.get("backlog") > behind, surge_from)
    found["propagation_backlog"] = (backlog, first(samples, lambda s: s.get("backlog") <= 1,
                                                   backlog) if backlog is not None else None)
    dark = first(samples, lambda s: in_service_without_connectivity(s)
                 >= WITHOUT_CONNECTIVITY_MIN, surge_from)
    found["in_service_without_connectivity"] = (dark, first(
        samples, lambda s: in_service_without_connectivity(s) < WITHOUT_CONNECTIVITY_MIN,
        dark) if dark is not None else None)
    falls = [s.t_s for before, s in itertools.pairwise(samples)
             if surge_from is not None and s.t_s >= surge_from
             and "az_records" in s.values and "az_records" in before.values
             and s.get("targets_failed") > before.get("targets_failed")]
    found["health_checks_flapping"] = (falls[0], falls[-1]) if falls else (None, None)
    removed = first(samples, lambda s: 0 <= s.get("az_records") < len(AZS)
                    and "az_records" in s.values, surge_from)
    found["az_failover"] = (removed, first(samples, lambda s: s.get("az_records") == len(AZS),
                                           removed) if removed is not None else None)
    off = action_times(timeline, "nlb_failover", "off")
    on = action_times(timeline, "nlb_failover", "on")
    found["failover_disabled"] = (off[0], on[-1] if on and on[-1] >= off[0] else None) \
        if off else (None, None)
    calm_from = max((v[0] for v in found.values() if v[0] is not None), default=race)
    recovery = next((s.t_s for s, r in service_ok_shares(samples)
                     if calm_from is not None and s.t_s >= calm_from and r >= SERVICE_OK_SHARE
                     and s.get("az_records") == len(AZS) and s.get("backlog") <= 1
                     and s.get("leases_held") >= recovered), None)
    found["recovery"] = (recovery, samples[-1].t_s if recovery is not None else None)
    return [Stage(k, *found[k]) for k in ORDER]


def service_ok_shares(samples: list[Sample]) -> list[tuple[Sample, float]]:
    """Each sample with the share of the service's calls since the one before that were ok."""
    out = []
    for before, s in itertools.pairwise(samples):
        ok = s.get("service_ok") - before.get("service_ok")
        failed = s.get("service_failed") - before.get("service_failed")
        out.append((s, ok / (ok + failed) if ok + failed > 0 else 0.0))
    return out


ORDER_RESOLUTION_S = 2.0
"""Onsets less than two of the run's 1-s samples apart cannot be ordered: the NLB's stages
begin within a second of one another (AWS gives flapping at 5:30 AM, before the propagation
backlog at 6:21 AM, yet lists it after), and each is seen only at the sample that crosses its
threshold."""


def in_aws_order(stages: list[Stage], resolution_s: float = ORDER_RESOLUTION_S) -> bool:
    """Every stage happened and no onset comes before an earlier stage's by ``resolution_s``
    or more (onsets closer than that count as simultaneous)."""
    onsets = [s.onset_s for s in stages]
    if any(t is None for t in onsets):
        return False
    return all(later > earlier - resolution_s  # type: ignore[operator]
               for i, later in enumerate(onsets) for earlier in onsets[:i])


def success_ratio_after(timeline: Timeline, after_s: float | None) -> float | None:
    """The share of the service's calls that succeeded from ``after_s`` to the end."""
    rows = timeline.between(after_s, None)
    if after_s is None or len(rows) < 2:
        return None
    ok = rows[-1].get("service_ok") - rows[0].get("service_ok")
    failed = rows[-1].get("service_failed") - rows[0].get("service_failed")
    return round(ok / (ok + failed), 4) if ok + failed > 0 else None


def failed_after(timeline: Timeline, after_s: float | None) -> int | None:
    """The service's calls that failed from ``after_s`` to the end."""
    rows = timeline.between(after_s, None)
    if after_s is None or len(rows) < 2:
        return None
    return int(rows[-1].get("service_failed") - rows[0].get("service_failed"))


def format_timeline(stages: list[Stage]) -> str:
    """The closing timeline: each stage's emulated onset and end beside AWS's (PDT)."""
    by_key = {s.key: s for s in stages}
    lines = [f"{'stage':<44} {'emulated (s into the run)':<26} AWS (PDT)"]
    for aws in STAGES:
        s = by_key[aws.key]
        if s.onset_s is None:
            emulated = "did not happen"
        else:
            end = "..." if s.end_s is None else f"{s.end_s:.0f}"
            emulated = f"{s.onset_s:.0f} -> {end}"
        lines.append(f"{aws.title:<44} {emulated:<26} {aws.aws_onset} -> {aws.aws_end}")
    return "\n".join(lines)
