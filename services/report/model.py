"""What a report is made of: the record of one run, and what the report reads out of it.

A :class:`RunRecord` holds what a run already has when it ends: the history events (from the
Redis stream), the monitor's DNS and load series, and the run's result object. Everything
the report shows is derived here from those records by pure functions; nothing is simulated.

Time: history events carry wall-clock milliseconds, the monitor's samples carry seconds on
its own monotonic clock (the ``+12.3s`` the demo prints). ``t0_epoch_s`` is the wall-clock
moment of the monitor's zero, so both land on one axis: seconds since the monitor started.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.core import names
from services.core.events import (
    BatchCommitted,
    CheckPassed,
    DnsAnswer,
    Event,
    FaultEnded,
    FaultStarted,
    PlanPublished,
    Resumed,
    RoundCompleted,
    Stalled,
    TreeDeleted,
)
from services.report.monitor import FAILURES, DnsSample, LoadSample, Monitor
from services.store import history

LATENCY_METRIC = "dnsrace_client_request_seconds_bucket"


class RunResult(Protocol):
    """What the demo's ModeResult and a scenario's Outcome both say about a run."""

    @property
    def mode(self) -> str: ...

    @property
    def empty_answers(self) -> int: ...

    @property
    def failed_requests(self) -> int: ...


@dataclass(frozen=True)
class LatencySample:
    """One scrape of the clients' request-latency histogram: cumulative counts by ``le``."""

    at: float
    buckets: dict[str, float]


@dataclass
class RunRecord:
    """One run, as recorded: the report of a demo, a scenario run or a matrix row reads these."""

    label: str
    mode: str
    events: list[Event]
    dns: list[DnsSample]
    load: list[LoadSample]
    t0_epoch_s: float
    """Wall-clock time (epoch seconds) of the monitor's zero."""
    latency: list[LatencySample] = field(default_factory=list)
    dns_every_s: float = 0.2
    result: RunResult | None = field(default=None, repr=False, compare=False)

    def named(self, label: str) -> RunRecord:
        """The same record under another label (a matrix row's name)."""
        return dataclasses.replace(self, label=label)

    def t(self, event: Event) -> float:
        """An event's time on the report's axis (seconds since the monitor's zero)."""
        return event.at_ms / 1000 - self.t0_epoch_s

    def at_epoch(self, epoch_s: float) -> float:
        return epoch_s - self.t0_epoch_s

    @classmethod
    def from_monitor(cls, monitor: Monitor, events: list[Event],
                     result: RunResult | None = None, label: str | None = None,
                     latency: list[LatencySample] | None = None) -> RunRecord:
        """A record from a monitor (running or finished) and the run's history events."""
        mode = str(result.mode) if result is not None else str(monitor.settings.mode)
        found = latency if latency is not None else latency_from_load(monitor.load)
        return cls(label or mode, mode, list(events), list(monitor.dns), list(monitor.load),
                   t0_epoch_s=time.time() - monitor.now(), latency=found,
                   dns_every_s=monitor.dns_every_s, result=result)


def latency_from_load(load: list[LoadSample]) -> list[LatencySample]:
    """Latency scrapes carried by the load samples, when LoadSample has ``latency_buckets``."""
    out = []
    for sample in load:
        buckets = getattr(sample, "latency_buckets", None)
        if buckets:
            out.append(LatencySample(sample.at, dict(buckets)))
    return out


async def capture(client: Any, monitor: Monitor, result: RunResult | None = None,
                  label: str | None = None, since_ms: int = 0) -> RunRecord:
    """Read the run's history from Redis (``client``) and build its record with the monitor's
    series. Call it while the cluster's Redis is still up."""
    events = [e for _, e in await history.RedisHistory(client).read() if e.at_ms >= since_ms]
    return RunRecord.from_monitor(monitor, events, result, label)


# ---- what the report reads out of a record -----------------------------------------------


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    label: str
    detail: str = ""
    open: bool = False
    """The span had not ended when the record did."""


@dataclass(frozen=True)
class Round:
    source: str
    generation: int
    start: float
    end: float
    committed: int = 0
    rejected: int = 0
    deleted: int = 0
    stale_flips: int = 0
    completed: bool = True


def enactor_sources(record: RunRecord) -> list[str]:
    """The enactors in the history, in AZ order (an AZ with no event is still a lane)."""
    seen = {e.source for e in record.events if e.source.startswith("enactor/")}
    ordered = [f"enactor/{az}" for az in names.AZS]
    return ordered + sorted(seen - set(ordered))


def domain(record: RunRecord) -> tuple[float, float]:
    """The time span the charts show: from the monitor's zero to the last observation."""
    times = [s.at for s in record.dns] + [s.at for s in record.load]
    if times:
        start = min(0.0, min(times))
        end = max(times)
    elif record.events:
        start, end = record.t(record.events[0]), record.t(record.events[-1])
    else:
        return 0.0, 1.0
    if record.events:
        end = max(end, record.t(record.events[-1]))
    return start, max(end, start + 1.0)


def fault_windows(record: RunRecord) -> list[Span]:
    """Every fault's active window: started to ended (or expiry, or the end of the record)."""
    end_of_record = domain(record)[1]
    ended = {e.fault_id: record.t(e) for e in record.events if isinstance(e, FaultEnded)}
    out = []
    for e in record.events:
        if isinstance(e, FaultStarted):
            stop = ended.get(e.fault_id)
            point = e.params.get("point", "") if e.params else ""
            out.append(Span(record.t(e), stop if stop is not None else min(
                end_of_record, record.at_epoch(e.expires_ms / 1000)),
                f"{e.type} {e.target}", str(point), open=stop is None))
    return out


def stalls(record: RunRecord, source: str) -> list[Span]:
    """When ``source`` stood still at a stall point (Stalled to Resumed)."""
    end_of_record = domain(record)[1]
    out, waiting = [], {}
    for e in record.events:
        if e.source != source:
            continue
        if isinstance(e, Stalled):
            waiting[e.fault_id] = e
        elif isinstance(e, Resumed) and e.fault_id in waiting:
            s = waiting.pop(e.fault_id)
            out.append(Span(record.t(s), record.t(e), s.point, f"plan {s.generation}"))
    out += [Span(record.t(s), end_of_record, s.point, f"plan {s.generation}", open=True)
            for s in waiting.values()]
    return sorted(out, key=lambda s: s.start)


def rounds(record: RunRecord, source: str) -> list[Round]:
    """``source``'s rounds: from its staleness check to its RoundCompleted for that plan."""
    end_of_record = domain(record)[1]
    out: list[Round] = []
    current: CheckPassed | None = None
    flips = 0
    for e in record.events:
        if e.source != source:
            continue
        if isinstance(e, CheckPassed):
            if current is not None:  # a round that never completed (stopped, restarted)
                out.append(Round(source, current.generation, record.t(current), record.t(e),
                                 stale_flips=flips, completed=False))
            current, flips = e, 0
        elif isinstance(e, BatchCommitted) and e.generation < e.previous:
            flips += 1
        elif isinstance(e, RoundCompleted) and current is not None and (
                e.generation == current.generation):
            out.append(Round(source, e.generation, record.t(current), record.t(e),
                             e.committed, e.rejected, e.deleted, flips))
            current, flips = None, 0
    if current is not None:
        out.append(Round(source, current.generation, record.t(current), end_of_record,
                         stale_flips=flips, completed=False))
    return out


def newest_plan(record: RunRecord) -> list[tuple[float, float]]:
    return [(record.t(e), float(e.generation)) for e in record.events
            if isinstance(e, PlanPublished)]


def alias_flips(record: RunRecord, endpoint: str) -> list[BatchCommitted]:
    return [e for e in record.events
            if isinstance(e, BatchCommitted) and e.endpoint == endpoint]


def served(record: RunRecord, endpoint: str) -> list[DnsAnswer]:
    """What the DNS server answered for ``endpoint`` (its samples in the history)."""
    return [e for e in record.events
            if isinstance(e, DnsAnswer) and e.endpoint == endpoint]


def live_deletions(record: RunRecord, endpoint: str | None = None) -> list[TreeDeleted]:
    return [e for e in record.events if isinstance(e, TreeDeleted) and e.live
            and (endpoint is None or e.endpoint == endpoint)]


def stale_flips(record: RunRecord, endpoint: str | None = None) -> list[BatchCommitted]:
    return [e for e in record.events if isinstance(e, BatchCommitted)
            and e.generation < e.previous and (endpoint is None or e.endpoint == endpoint)]


def empty_runs(samples: list[DnsSample], every_s: float) -> list[Span]:
    """Stretches of consecutive empty answers (NOERROR, no address) seen by DNS polling."""
    out: list[Span] = []
    start: float | None = None
    last = 0.0
    for s in samples:
        if s.empty:
            if start is None:
                start = s.at
            last = s.at
        elif start is not None:
            out.append(Span(start, s.at, "empty"))
            start = None
    if start is not None:
        out.append(Span(start, last + every_s, "empty", open=True))
    return out


def healthy_from(load: list[LoadSample]) -> int:
    """Index of the first load sample after which clients had traffic and no failure."""
    for i in range(1, len(load)):
        before, after = load[i - 1].requests, load[i].requests
        total = sum(after.values()) - sum(before.values())
        failed = sum(after.get(o, 0.0) - before.get(o, 0.0) for o in FAILURES)
        if total > 0 and failed <= 0:
            return i - 1
    return 0
