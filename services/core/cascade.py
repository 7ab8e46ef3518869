"""The cascade as a timeline: one sample a second, the moments that matter, and what they add up to.

``dnsrace cascade`` (services.tools.cascade) samples the cluster once a second into a
:class:`Timeline` and marks its moments (the race, the name empty, the DNS repair, the
operators' actions); everything it reports is computed here, from the timeline alone. Each
stage of the cascade (``dwfm`` here; Network Manager and NLB in part 2) adds its own values to
the samples under its own names and its own figures to the summary. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.core.launch import LaunchOutcome

COLLAPSE_SHARE = 0.10
"""Goodput below this share of the healthy rate counts as collapsed (issue 14)."""
COLLAPSE_MIN_S = 20.0
"""A collapse is goodput that low for at least this long while DNS answers."""
RECOVERED_SHARE = 0.95
"""Leases count as recovered once this share of them is held."""


@dataclass(frozen=True)
class Sample:
    """The cluster at ``t_s`` seconds into the run."""

    t_s: float
    dns_answers: bool
    """The regional name answered with addresses (asked without a cache)."""
    values: dict[str, float] = field(default_factory=dict)
    """What each stage read, by name (``leases_held``, ``goodput``, ``launches_ok`` ...)."""

    def get(self, name: str) -> float:
        return self.values.get(name, 0.0)


@dataclass(frozen=True)
class Action:
    """Something the operators (or the run, as the operators) did by hand."""

    t_s: float
    action: str
    target: str
    detail: str = ""


@dataclass
class Timeline:
    samples: list[Sample] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    """Moments by name, in seconds into the run: ``race``, ``dns_repaired``, ``operators``."""
    actions: list[Action] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def mark(self, name: str, t_s: float) -> None:
        self.marks.setdefault(name, t_s)

    def between(self, start: float | None, end: float | None) -> list[Sample]:
        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        return [s for s in self.samples if lo <= s.t_s < hi]


def dns_outage(timeline: Timeline) -> tuple[float, float] | None:
    """(first sample with the name empty, first sample after it answering again), or None.

    An outage still going at the end of the timeline ends at the last sample."""
    start = next((s.t_s for s in timeline.samples if not s.dns_answers), None)
    if start is None:
        return None
    end = next(
        (s.t_s for s in timeline.samples if s.t_s > start and s.dns_answers),
        timeline.samples[-1].t_s,
    )
    return start, end


def longest_collapse(
    timeline: Timeline, healthy_goodput: float, total: int
) -> tuple[float, float] | None:
    """The longest stretch (start, length s) during which DNS answered, leases were missing
    (fewer than 95 % held) and goodput stayed below 10 % of ``healthy_goodput``; None if none.

    Leases missing is part of it: with every lease held there is nothing to establish, and a
    goodput of zero is health, not collapse."""
    best: tuple[float, float] | None = None
    start: float | None = None
    last = 0.0
    for s in timeline.samples:
        low = (
            s.dns_answers
            and s.get("leases_held") < RECOVERED_SHARE * total
            and s.get("goodput") < COLLAPSE_SHARE * healthy_goodput
        )
        if low:
            start = s.t_s if start is None else start
            last = s.t_s
            if best is None or last - start > best[1]:
                best = (start, last - start)
        else:
            start = None
    return best


def recovered_after(timeline: Timeline, after_s: float, total: int) -> float | None:
    """Seconds from ``after_s`` to the first sample with >= 95 % of ``total`` leases held."""
    for s in timeline.samples:
        if s.t_s >= after_s and s.get("leases_held") >= RECOVERED_SHARE * total:
            return s.t_s - after_s
    return None


def launch_counts(samples: Iterable[Sample], first: Sample | None) -> dict[str, float]:
    """Launches by outcome between ``first`` and the last of ``samples`` (cumulative counters)."""
    rows = list(samples)
    if not rows:
        return {}
    base = first or rows[0]
    end = rows[-1]
    return {
        o.value: end.get(f"launches_{o.value}") - base.get(f"launches_{o.value}")
        for o in LaunchOutcome
    }


def success_ratio(counts: dict[str, float]) -> float | None:
    total = sum(counts.values())
    return None if total <= 0 else round(counts.get(LaunchOutcome.OK.value, 0.0) / total, 3)


def launch_phases(timeline: Timeline) -> dict[str, dict[str, float]]:
    """Launch outcomes before the DNS outage, during it, and after the repair."""
    outage = dns_outage(timeline)
    repaired = timeline.marks.get("dns_repaired")
    start = outage[0] if outage else timeline.marks.get("race")
    end = repaired if repaired is not None else (outage[1] if outage else None)
    before = timeline.between(None, start)
    during = timeline.between(start, end) if start is not None and end is not None else []
    after = timeline.between(end, None) if end is not None else []
    return {
        "before": launch_counts(before, None),
        "during": launch_counts(during, before[-1] if before else None),
        "after": launch_counts(after, during[-1] if during else None),
    }


def from_ready(timeline: Timeline) -> Timeline:
    """The timeline from the moment marked ``ready`` on (the cluster's start-up left out)."""
    ready = timeline.marks.get("ready")
    if ready is None:
        return timeline
    return Timeline(timeline.between(ready, None), timeline.marks, timeline.actions)


def failures_within(
    timeline: Timeline, stretch: tuple[float, float] | None, settle_s: float
) -> int | None:
    """DynamoDB calls DWFM saw fail inside ``stretch`` (start, length), from ``settle_s``
    after its start (the resolvers' negative caching); None without a stretch that long."""
    if stretch is None or stretch[1] <= settle_s:
        return None
    inside = timeline.between(stretch[0] + settle_s, stretch[0] + stretch[1] + 1e-6)
    if len(inside) < 2:
        return None
    return int(inside[-1].get("dynamodb_failures") - inside[0].get("dynamodb_failures"))


def dwfm_summary(
    timeline: Timeline, total: int, healthy_goodput: float, settle_s: float = 0.0
) -> dict[str, object]:
    """What the DWFM stage adds to the cascade's summary (issue 14, item 8), from ``ready`` on.

    ``settle_s``: how long after the name answers again DWFM may still fail on a cached empty
    answer (the SOA minimum), left out of ``dynamodb_failures_in_collapse``."""
    timeline = from_ready(timeline)
    outage = dns_outage(timeline)
    held = [s.get("leases_held") for s in timeline.samples]
    collapse = longest_collapse(timeline, healthy_goodput, total)
    repaired = timeline.marks.get("dns_repaired")
    recovery = None if repaired is None else recovered_after(timeline, repaired, total)
    phases = launch_phases(timeline)
    last = timeline.samples[-1] if timeline.samples else Sample(0.0, True)
    return {
        "dns_outage_s": 0.0 if outage is None else round(outage[1] - outage[0], 1),
        "leases_total": total,
        "leases_min_held": int(min(held)) if held else 0,
        "collapse": collapse is not None and collapse[1] >= COLLAPSE_MIN_S,
        "collapse_s": 0.0 if collapse is None else round(collapse[1], 1),
        "dynamodb_failures_in_collapse": failures_within(timeline, collapse, settle_s),
        "healthy_goodput_per_s": round(healthy_goodput, 2),
        "lease_recovery_s": None if recovery is None else round(recovery, 1),
        "launch_success_ratio": {phase: success_ratio(c) for phase, c in phases.items()},
        "launches": phases,
        "work_void": int(last.get("work_void")),
        "work_started_late": int(last.get("work_started_late")),
        "work_dropped": int(last.get("work_dropped")),
        "queue_depth_max": int(max((s.get("queue_depth") for s in timeline.samples), default=0)),
    }
