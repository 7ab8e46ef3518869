"""The story of a run in a few moments, and its figures, read from the record (pure).

The moments are the 2025 sequence for the regional name, each found in the record or absent:
the slow enactor's staleness check, its stale flip of the regional alias, the clean-up that
deleted the tree the alias named, the first empty answer DNS polling saw, the operator's
repair, and the first answer with addresses again. A safe run has none of the middle three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from services.core import checker, events, names
from services.core.population import PopulationOutcome, outcome_of
from services.report.model import (
    RunRecord,
    empty_runs,
    healthy_from,
    live_deletions,
    stale_flips,
)
from services.report.monitor import FAILURES
from services.report.scale import counter_deltas, intervals


class MomentKind(StrEnum):
    STALE_CHECK = "stale_check"
    STALE_FLIP = "stale_flip"
    LIVE_DELETED = "live_deleted"
    FIRST_EMPTY = "first_empty"
    REPAIR = "repair"
    ANSWERS_AGAIN = "answers_again"


@dataclass(frozen=True)
class Moment:
    kind: MomentKind
    at: float
    title: str
    detail: str


def story(record: RunRecord) -> list[Moment]:
    """The moments of the regional name's story that happened in this run, in time order."""
    moments: list[Moment] = []
    flip = next(iter(stale_flips(record, names.REGIONAL)), None)
    if flip is not None:
        check = next((e for e in reversed(record.events)
                      if isinstance(e, events.CheckPassed) and e.source == flip.source
                      and e.generation == flip.generation and e.at_ms <= flip.at_ms), None)
        if check is not None:
            moments.append(Moment(MomentKind.STALE_CHECK, record.t(check), "stale check",
                                  checker.describe(check)))
        moments.append(Moment(MomentKind.STALE_FLIP, record.t(flip), "stale flip",
                              checker.describe(flip)))
    deleted = next((e for e in live_deletions(record, names.REGIONAL)
                    if flip is None or e.at_ms >= flip.at_ms), None)
    if deleted is not None:
        moments.append(Moment(MomentKind.LIVE_DELETED, record.t(deleted), "live tree deleted",
                              checker.describe(deleted)))
    empty = empty_runs(record.dns, record.dns_every_s)
    if empty:
        moments.append(Moment(MomentKind.FIRST_EMPTY, empty[0].start, "empty answers",
                              f"DNS polling: {names.REGIONAL} answered NOERROR with no "
                              f"address ({sum(1 for _ in _empty(record))} times in all)"))
    repaired_at = getattr(record.result, "repaired_at", None)
    if isinstance(repaired_at, float):
        moments.append(Moment(MomentKind.REPAIR, record.at_epoch(repaired_at),
                              "operator repair done",
                              "the operator's repair (dnsrace repair) finished: every broken "
                              "endpoint names a tree of the newest plan"))
    if empty and not empty[-1].open:
        moments.append(Moment(MomentKind.ANSWERS_AGAIN, empty[-1].end, "answers again",
                              f"DNS polling: {names.REGIONAL} answered with addresses again"))
    return sorted(moments, key=lambda m: m.at)


def _empty(record: RunRecord) -> list[float]:
    return [s.at for s in record.dns if s.empty]


@dataclass
class Figures:
    """The summary of one run, as measured from its record."""

    label: str
    mode: str
    empty_answers: int = 0
    time_to_empty_s: float | None = None
    """From the deletion of the tree the regional alias named to the first empty answer."""
    outage_s: float | None = None
    """From the first empty answer to the first answer with addresses after the last one."""
    still_empty: bool = False
    stale_flips: int = 0
    live_deletions: int = 0
    rejected_batches: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    failed_requests: int = 0
    peak_failure_ratio: float = 0.0
    violations: dict[str, int] = field(default_factory=dict)
    recovery_s: float | None = None
    """From the first answer with addresses again to the first second under 1 % failures."""
    converged: bool | None = None
    stale_answers: int | None = None
    """Answers naming an older plan, seen by DNS polling and the clients (scenario runs)."""
    fleet: PopulationOutcome | None = None
    """The virtual clients' peak failing share, ramp and recovery ramp (None: no fleet)."""
    problems: list[str] = field(default_factory=list)

    @property
    def outage(self) -> bool:
        return self.empty_answers > 0


def figures(record: RunRecord, violations: list[checker.Violation] | None = None) -> Figures:
    found = checker.check(record.events) if violations is None else violations
    f = Figures(record.label, record.mode)
    f.empty_answers = len(_empty(record))
    f.stale_flips = len(stale_flips(record))
    f.live_deletions = len(live_deletions(record))
    for e in record.events:
        if isinstance(e, events.BatchRejected):
            f.rejected_batches[e.reason] = f.rejected_batches.get(e.reason, 0) + 1
    for inv in checker.Invariant:
        f.violations[inv.name] = sum(1 for v in found if v.invariant is inv)
    empty = empty_runs(record.dns, record.dns_every_s)
    if empty:
        f.outage_s = empty[-1].end - empty[0].start
        f.still_empty = empty[-1].open
        cause = next((e for e in live_deletions(record, names.REGIONAL)
                      if record.t(e) <= empty[0].start), None)
        if cause is not None:
            f.time_to_empty_s = max(0.0, empty[0].start - record.t(cause))
    _load_figures(record, f, empty[-1].end if empty and not empty[-1].open else None)
    f.fleet = fleet_outcome(record)
    result = record.result
    if result is not None:
        if hasattr(result, "converged_after_s"):
            f.converged = result.converged_after_s is not None
        stale = getattr(result, "stale_answers", None)
        f.stale_answers = stale if isinstance(stale, int) else None
        for name in ("problems", "failures"):
            f.problems += [str(p) for p in getattr(result, name, [])]
    return f


def _load_figures(record: RunRecord, f: Figures, answering_at: float | None) -> None:
    """Requests counted from the first healthy second on, as the demo counts them."""
    load = record.load[healthy_from(record.load):]
    if len(load) < 2:
        return
    total = counter_deltas(load[0].requests, load[-1].requests)
    f.requests = round(sum(total.values()))
    f.failed_requests = round(sum(v for k, v in total.items() if k in FAILURES))
    seconds = intervals([(s.at, s.requests) for s in load], min_width=1.0)
    ratios = [(i.end, failure_ratio(i.counts)) for i in seconds]
    f.peak_failure_ratio = max((r for _, r in ratios if r is not None), default=0.0)
    if answering_at is not None:  # half-second steps: the record may end soon after
        steps = intervals([(s.at, s.requests) for s in load], min_width=0.5)
        recovered = next((i.end for i in steps if i.start >= answering_at and (
            failure_ratio(i.counts) or 0.0) < 0.01 and i.total > 0), None)
        if recovered is not None:
            f.recovery_s = recovered - answering_at


def fleet_share(record: RunRecord) -> list[tuple[float, float]]:
    """(time, share of the virtual clients failing) at each scrape that saw a fleet."""
    return [(s.at, s.fleet_failing / s.fleet_clients) for s in record.load if s.fleet_clients]


def fleet_outcome(record: RunRecord) -> PopulationOutcome | None:
    """The fleet's peak share and ramps over the record (None: the run had no fleet)."""
    share = fleet_share(record)
    if not share:
        return None
    return outcome_of(share, int(max(s.fleet_clients for s in record.load)))


def failure_ratio(counts: dict[str, float]) -> float | None:
    total = sum(counts.values())
    if total <= 0:
        return None
    return sum(v for k, v in counts.items() if k in FAILURES) / total
