"""Network Manager's propagation queue as pure decisions: network state for launched instances.

Every launched instance needs its network state propagated before it has connectivity. Network
Manager works through a FIFO queue at a finite throughput (``rate_per_s`` propagations a
second). After the leases came back on 20 October 2025 launches surged, the queue grew, and new
instances ran for a long time without connectivity.

``queue_throttle`` (the fix AWS announced, part 1 applies it to DWFM's queue) applies here too:
while the propagation queue is longer than what Network Manager can propagate within
``max_wait_s``, new launches are refused (``RequestLimitExceeded`` at the EC2 API) instead of
being admitted to wait.

Nothing reads a clock: every call is given ``now_s``.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from dataclasses import dataclass, field


class Admission(enum.Enum):
    """What became of a launch offered to Network Manager."""

    QUEUED = "queued"
    THROTTLED = "throttled"
    """``queue_throttle``: the queue is too long; the EC2 API answers ``RequestLimitExceeded``."""


@dataclass(frozen=True)
class Propagated:
    """An instance whose network state was propagated: it has connectivity from ``at_s``."""

    instance: str
    queued_s: float
    at_s: float

    @property
    def waited_s(self) -> float:
        return self.at_s - self.queued_s


@dataclass
class PropagationQueue:
    """Network state waiting to be propagated, served at ``rate_per_s`` in arrival order."""

    rate_per_s: float
    """Propagations a second Network Manager finishes (its throughput)."""
    throttle: bool = False
    """``queue_throttle`` on: refuse new launches while the queue is too long."""
    max_wait_s: float = 5.0
    """With ``throttle``: admit only while the queue can be propagated within this long."""
    _waiting: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _credit: float = 0.0
    _last_s: float | None = None
    throttled: int = 0
    """Launches refused by ``queue_throttle`` so far."""

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.max_wait_s <= 0:
            raise ValueError("propagation rate and max wait must be > 0")

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def admission_limit(self) -> int | None:
        """The longest queue ``queue_throttle`` admits to (None when it is off)."""
        if not self.throttle:
            return None
        return max(1, math.floor(self.rate_per_s * self.max_wait_s + 1e-9))

    def offer(self, instance: str, now_s: float) -> Admission:
        """A launched instance's network state to propagate."""
        self._advance_credit(now_s)
        limit = self.admission_limit
        if limit is not None and len(self._waiting) >= limit:
            self.throttled += 1
            return Admission.THROTTLED
        self._waiting.setdefault(instance, now_s)
        return Admission.QUEUED

    def forget(self, instance: str) -> bool:
        """An instance terminated before its state propagated; True if it was waiting."""
        return self._waiting.pop(instance, None) is not None

    def propagate(self, now_s: float) -> list[Propagated]:
        """What Network Manager finished propagating since the last call, oldest first."""
        self._advance_credit(now_s)
        done: list[Propagated] = []
        while self._waiting and self._credit >= 1.0:
            instance, queued_s = self._waiting.popitem(last=False)
            self._credit -= 1.0
            done.append(Propagated(instance, queued_s, now_s))
        if not self._waiting:
            self._credit = min(self._credit, 1.0)  # no banking of idle throughput
        return done

    def oldest_age_s(self, now_s: float) -> float:
        """How long the oldest waiting instance has run without connectivity."""
        if not self._waiting:
            return 0.0
        return max(0.0, now_s - next(iter(self._waiting.values())))

    def _advance_credit(self, now_s: float) -> None:
        if self._last_s is not None and now_s > self._last_s:
            self._credit += (now_s - self._last_s) * self.rate_per_s
        if not self._waiting:
            self._credit = min(self._credit, 1.0)
        if self._last_s is None or now_s > self._last_s:
            self._last_s = now_s
