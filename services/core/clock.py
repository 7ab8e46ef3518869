"""The clock every decision by time is given: lock leases, fault expiry, event times.

Nothing in :mod:`services.core` reads a clock. A process passes the host's clock
(:class:`services.runtime.clock.WallClock`); the interleaving explorer passes its logical
clock; a test passes one it sets. One unit everywhere: integer milliseconds.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since this clock's epoch (the Unix epoch for the wall clock)."""
        ...
