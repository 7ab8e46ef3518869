"""Open-model arrivals in real time: each arrival's index when it is due, until stopped.

The schedule is :mod:`loadgen.schedule`'s (a steady ``rate``, no ramp); this is its clock and
its stop. A caller that falls behind gets the arrivals that are already due at once, one after
the other, so the rate is kept over time and never depends on how long requests take.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from loadgen.schedule import arrival_time


async def arrivals(rate: float, stop: asyncio.Event) -> AsyncIterator[int]:
    """0, 1, 2... each at its due time (``k / rate`` seconds after the first call); ends as soon
    as ``stop`` is set, also while waiting for the next one."""
    start = time.monotonic()
    k = 0
    while not stop.is_set():
        due = start + arrival_time(k, rate, 0.0)
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
            return
        except TimeoutError:
            pass
        yield k
        k += 1
