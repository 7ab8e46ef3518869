"""The open-model arrival schedule, as pure functions of (index or time, rate, ramp).

The intended rate rises linearly from 0 to ``rate`` over ``ramp_s`` seconds, then stays.
Arrival ``k`` (from 0) is due when the cumulative intended arrivals reach ``k``; the schedule
never depends on when earlier requests completed, so a slow server cannot slow the load.
"""

from __future__ import annotations

import math

LATE_THRESHOLD_S = 0.010
"""An arrival sent more than this after its intended time counts as late."""


def rate_at(t: float, rate: float, ramp_s: float) -> float:
    """Intended requests per second at ``t`` seconds into the run."""
    if t < 0:
        return 0.0
    if ramp_s <= 0 or t >= ramp_s:
        return rate
    return rate * t / ramp_s


def cumulative_arrivals(t: float, rate: float, ramp_s: float) -> float:
    """Intended arrivals in ``[0, t)``: the integral of :func:`rate_at`."""
    if t <= 0:
        return 0.0
    if ramp_s <= 0:
        return rate * t
    if t <= ramp_s:
        return rate * t * t / (2 * ramp_s)
    return rate * ramp_s / 2 + rate * (t - ramp_s)


def arrival_time(k: int, rate: float, ramp_s: float) -> float:
    """When arrival ``k`` is due, in seconds from the start (``inf`` if the rate is 0)."""
    if k < 0:
        raise ValueError("arrival index must be >= 0")
    if rate <= 0:
        return math.inf
    if ramp_s <= 0:
        return k / rate
    during_ramp = rate * ramp_s / 2
    if k <= during_ramp:
        return math.sqrt(2 * ramp_s * k / rate)
    return ramp_s + (k - during_ramp) / rate


def scheduled_count(t: float, rate: float, ramp_s: float) -> int:
    """How many arrivals are due before ``t``: those ``k`` with ``arrival_time(k) < t``."""
    if t <= 0 or rate <= 0:
        return 0
    count = math.ceil(cumulative_arrivals(t, rate, ramp_s))
    # the closed forms round; settle the boundary with the same test the scheduler makes
    while count > 0 and arrival_time(count - 1, rate, ramp_s) >= t:
        count -= 1
    while arrival_time(count, rate, ramp_s) < t:
        count += 1
    return count
