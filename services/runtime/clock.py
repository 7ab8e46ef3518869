"""The host's clock: the one a process passes to whatever decides by time."""

from __future__ import annotations

import time


class WallClock:
    """Unix time in milliseconds. Every process of the cluster runs on one host, so they all
    read the same clock (Redis ``TIME`` included)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


WALL_CLOCK = WallClock()
"""The one a process passes unless it has a reason to pass another."""
