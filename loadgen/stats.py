"""Latency percentiles in bounded memory, and the end-of-run summary.

:class:`LatencyHistogram` keeps counts in logarithmic buckets 1 % wide, so a run of any length
uses a few kilobytes and every percentile it reports is at most 1 % above the exact value (and
never below it).  The maximum is exact.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from loadgen.outcome import Outcome

_FLOOR_S = 1e-6
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)


def bucket_of(value_s: float) -> int:
    """The bucket holding ``value_s``: bucket ``i`` covers ``(floor*g^(i-1), floor*g^i]``."""
    if value_s <= _FLOOR_S:
        return 0
    return max(0, math.ceil(math.log(value_s / _FLOOR_S) / _LOG_GROWTH - 1e-12))


def bucket_upper(index: int) -> float:
    return _FLOOR_S * _GROWTH ** index


def nearest_rank(count: int, q: float) -> int:
    """The 1-based rank of the ``q``-th percentile (0 < q <= 100) among ``count`` values."""
    if count <= 0:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError("percentile must be in (0, 100]")
    return max(1, math.ceil(q / 100 * count - 1e-9))


@dataclass
class LatencyHistogram:
    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    max_s: float = 0.0

    def record(self, value_s: float) -> None:
        index = bucket_of(value_s)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.max_s = max(self.max_s, value_s)

    def percentile(self, q: float) -> float:
        """Seconds below which ``q`` % of the values lie (nearest rank), at most 1 % high."""
        rank = nearest_rank(self.count, q)
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_upper(index), self.max_s)
        return self.max_s  # pragma: no cover - ranks never exceed count

    def summary(self) -> LatencySummary:
        if self.count == 0:
            return LatencySummary(0, None, None, None, None)
        def ms(seconds: float) -> float:
            return round(seconds * 1000, 3)

        return LatencySummary(self.count, ms(self.percentile(50)), ms(self.percentile(90)),
                              ms(self.percentile(99)), ms(self.max_s))


@dataclass(frozen=True)
class LatencySummary:
    """Latency from the intended send time to completion, in milliseconds."""

    count: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def to_text(self) -> str:
        if self.count == 0:
            return "no requests"
        return (f"p50 {self.p50_ms:.1f} ms  p90 {self.p90_ms:.1f} ms  "
                f"p99 {self.p99_ms:.1f} ms  max {self.max_ms:.1f} ms  (n={self.count})")


@dataclass(frozen=True)
class LoadSummary:
    """What a bounded load run did, for people (:meth:`to_text`) and tools (:meth:`to_json`)."""

    names: tuple[str, ...]
    operation: str
    peak_rate_per_s: float
    """The configured rate the ramp climbs to."""
    duration_s: float
    """Seconds from the first intended arrival until the scheduler stopped sending."""
    scheduled: int
    """Arrivals the schedule intended in that time (sent + dropped)."""
    sent: int
    dropped: int
    """Arrivals not sent because ``max_in_flight`` requests were already in flight."""
    late: int
    """Arrivals sent more than 10 ms after their intended time."""
    outcomes: dict[str, int]
    latency: LatencySummary
    """Every completed request, whatever its outcome."""
    latency_ok: LatencySummary
    """Requests whose outcome was ok."""
    clients: int = 0
    """Virtual clients of the fleet (0: one shared stub cache, the old behaviour)."""
    retries: int = 0
    failing: dict[str, float | None] | None = None
    """The population's peak share failing and ramps (:mod:`services.core.population`)."""

    @property
    def target_rate_per_s(self) -> float:
        """Mean intended rate over the run (below the peak while ramping)."""
        return self.scheduled / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def achieved_rate_per_s(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def completed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def ok(self) -> int:
        return self.outcomes.get(Outcome.OK, 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["names"] = list(self.names)
        data["duration_s"] = round(self.duration_s, 3)
        data["target_rate_per_s"] = round(self.target_rate_per_s, 2)
        data["achieved_rate_per_s"] = round(self.achieved_rate_per_s, 2)
        data["completed"] = self.completed
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_text(self) -> str:
        width = max(len(o) for o in Outcome)
        lines = [
            f"load run: {self.operation} on {', '.join(self.names)}",
            f"  duration   {self.duration_s:.2f} s",
            f"  rate       achieved {self.achieved_rate_per_s:.1f}/s of target "
            f"{self.target_rate_per_s:.1f}/s (peak {self.peak_rate_per_s:g}/s)",
            f"  arrivals   scheduled {self.scheduled}  sent {self.sent}  "
            f"dropped {self.dropped}  late {self.late}",
            "  outcomes",
        ]
        for outcome in Outcome:
            count = self.outcomes.get(outcome, 0)
            share = 100 * count / self.completed if self.completed else 0.0
            lines.append(f"    {outcome:<{width}}  {count:>9}  {share:5.1f} %")
        lines.append(f"  latency    {self.latency.to_text()}")
        lines.append(f"  latency ok {self.latency_ok.to_text()}")
        if self.clients and self.failing is not None:
            lines.append(f"  fleet      {self.clients} clients, {self.retries} retries, "
                         f"peak failing {100 * (self.failing['peak_share'] or 0):.1f} %, "
                         f"ramp {self.failing['ramp_s']} s, "
                         f"recovery {self.failing['recovery_ramp_s']} s")
        return "\n".join(lines)
