"""Pure layout and arithmetic for the report's charts: scales, ticks, paths, rates, quantiles.

Nothing here draws or reads anything; every function takes numbers and returns numbers or
path strings, so the report's geometry is tested without a browser.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

CHAR_WIDTH_EM = 0.6
"""Average advance of a character of the report's sans-serif font, in ems (for fitting)."""


@dataclass(frozen=True)
class LinearScale:
    """Maps ``domain`` (data units) linearly onto ``range`` (pixels); outside values clamp
    unless ``clamp`` is off (a chart clips what lies outside its plot instead)."""

    domain: tuple[float, float]
    range: tuple[float, float]
    clamp: bool = True

    def __call__(self, value: float) -> float:
        d0, d1 = self.domain
        r0, r1 = self.range
        if d1 == d0:
            return (r0 + r1) / 2
        t = (value - d0) / (d1 - d0)
        if self.clamp:
            t = min(1.0, max(0.0, t))
        return r0 + t * (r1 - r0)

    def length(self, duration: float) -> float:
        """Pixels a duration of data units takes (unclamped, never negative)."""
        d0, d1 = self.domain
        r0, r1 = self.range
        return abs(duration * (r1 - r0) / (d1 - d0)) if d1 != d0 else 0.0

    def span(self, start: float, end: float) -> tuple[float, float]:
        """(left pixel, width) of the interval [start, end], at least one pixel wide."""
        left, right = self(start), self(end)
        if right < left:
            left, right = right, left
        return left, max(1.0, right - left)

    def ticks(self, count: int = 8) -> list[float]:
        return nice_ticks(self.domain[0], self.domain[1], count)


def nice_step(span: float, count: int) -> float:
    """A 1-2-5 step that cuts ``span`` into about ``count`` parts."""
    if span <= 0 or count <= 0:
        return 1.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def nice_ticks(lo: float, hi: float, count: int = 8) -> list[float]:
    """Round tick values inside [lo, hi], about ``count`` of them."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        return [lo]
    step = nice_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10) + 0.0)
        value += step
    return ticks


def format_tick(value: float) -> str:
    return f"{value:g}"


def padded_domain(lo: float, hi: float, pad: float = 0.05, floor: float | None = None
                  ) -> tuple[float, float]:
    """[lo, hi] widened by ``pad`` of its span each side (1 unit when empty), not below floor."""
    span = hi - lo if hi > lo else 1.0
    lo, hi = lo - span * pad, hi + span * pad
    if floor is not None:
        lo = max(floor, lo)
    return lo, hi


def step_path(points: Sequence[tuple[float, float]], x: LinearScale, y: LinearScale,
              end: float | None = None) -> str:
    """An SVG path that holds each value until the next point (step-after), to ``end``."""
    if not points:
        return ""
    parts = [f"M{x(points[0][0]):.1f},{y(points[0][1]):.1f}"]
    for (_, prev), (t, value) in itertools.pairwise(points):
        parts.append(f"H{x(t):.1f}")
        if value != prev:
            parts.append(f"V{y(value):.1f}")
    if end is not None:
        parts.append(f"H{x(end):.1f}")
    return "".join(parts)


def line_path(points: Sequence[tuple[float, float]], x: Callable[[float], float],
              y: Callable[[float], float]) -> str:
    """A polyline through the points."""
    return "".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}"
                   for i, (t, v) in enumerate(points))


def tick_path(times: Iterable[float], x: LinearScale, top: float, height: float) -> str:
    """Short vertical ticks at ``times``, one path for all of them."""
    return "".join(f"M{x(t):.1f},{top:.1f}v{height:.1f}" for t in times)


def fits(label: str, width_px: float, font_px: float) -> bool:
    """Whether ``label`` set at ``font_px`` fits in ``width_px``."""
    return len(label) * font_px * CHAR_WIDTH_EM <= width_px


def counter_deltas(before: Mapping[str, float], after: Mapping[str, float]
                   ) -> dict[str, float]:
    """Increase of each counter between two scrapes (a counter that went down restarted)."""
    out = {}
    for key, value in after.items():
        previous = before.get(key, 0.0)
        out[key] = value - previous if value >= previous else value
    return out


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    counts: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.counts.values())

    def rate(self, key: str) -> float:
        width = self.end - self.start
        return self.counts.get(key, 0.0) / width if width > 0 else 0.0


def intervals(points: Sequence[tuple[float, Mapping[str, float]]], min_width: float = 0.0
              ) -> list[Interval]:
    """Counter increases between successive scrapes ``(time, counters)``.

    Scrapes closer than ``min_width`` to the start of the current interval are merged into
    the next, so that an interval is never narrower than ``min_width`` (one second, for
    outcomes "per second").
    """
    out: list[Interval] = []
    if len(points) < 2:
        return out
    start, base = points[0]
    for t, counters in points[1:]:
        if t - start < min_width:
            continue
        out.append(Interval(start, t, counter_deltas(base, counters)))
        start, base = t, counters
    return out


def parse_le(le: str) -> float:
    return math.inf if le in ("+Inf", "inf", "Inf") else float(le)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``{upper bound: count}``, as Prometheus
    computes it (linear within the bucket; the lowest bucket starts at 0; a quantile in the
    +Inf bucket is the highest finite bound). None when the histogram is empty."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count)
        lower_bound, lower_count = bound, count
    return None


def bucket_deltas(before: Mapping[str, float], after: Mapping[str, float]
                  ) -> dict[float, float]:
    """Per-interval cumulative histogram from two scrapes of ``_bucket`` counters by ``le``."""
    return {parse_le(le): value for le, value in counter_deltas(before, after).items()}


def stagger(positions: Sequence[float], min_gap: float) -> list[int]:
    """A row for each label at ``positions`` (in any order) so that labels sharing a row are
    at least ``min_gap`` apart: :func:`pack` of points."""
    return pack([(pos, pos) for pos in positions], min_gap)


def pack(spans: Sequence[tuple[float, float]], gap: float = 0.0) -> list[int]:
    """A row for each interval (start, end) so that intervals sharing a row do not overlap
    (and keep ``gap`` between them): the lowest free row, taking intervals by start."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    ends: list[float] = []
    rows = [0] * len(spans)
    for i in order:
        start, end = spans[i]
        row = next((r for r, last in enumerate(ends) if start - last >= gap), len(ends))
        if row == len(ends):
            ends.append(end)
        else:
            ends[row] = end
        rows[i] = row
    return rows


@dataclass(frozen=True)
class LogScale:
    """Maps ``domain`` (positive data units) onto ``range`` on a log10 scale, clamping."""

    domain: tuple[float, float]
    range: tuple[float, float]

    def __call__(self, value: float) -> float:
        d0, d1 = (math.log10(max(v, 1e-12)) for v in self.domain)
        r0, r1 = self.range
        if d1 == d0:
            return (r0 + r1) / 2
        t = (math.log10(max(value, 1e-12)) - d0) / (d1 - d0)
        return r0 + min(1.0, max(0.0, t)) * (r1 - r0)

    def ticks(self) -> list[float]:
        """1-2-5 values of each decade inside the domain."""
        lo, hi = self.domain
        out = []
        for exponent in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
            for factor in (1, 2, 5):
                value = factor * 10.0 ** exponent
                if lo <= value <= hi:
                    out.append(value)
        return out
