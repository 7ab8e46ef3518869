"""How long to wait before trying again: one retry policy for every loop that retries.

Modelled on redis-py's ``redis/backoff.py``: a policy is an object, and the delay before the
``attempt``-th retry is ``min(cap, base * factor ** (attempt - 1))``, of which the ``jitter``
fraction is drawn at random (1: full jitter, uniform in [0, delay]; 0.5: equal jitter; 0: none)
from a ``random.Random`` the caller may seed. The caller counts its attempts (and starts again
at 1 after a success), so the policy has no state and one policy may serve many loops.

Not to be confused with the enactor's *decision* ``Backoff`` (``services.enactor.decisions``):
that one says "another enactor holds this endpoint's lock, wait"; this one says how long.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryBackoff:
    """Capped exponential back-off with jitter; bad parameters raise ``ValueError`` at once."""

    base_s: float = 0.05
    """Delay ceiling before the first retry, seconds."""
    cap_s: float = 1.0
    """Largest delay, seconds."""
    factor: float = 2.0
    """Growth of the ceiling from one attempt to the next (>= 1)."""
    jitter: float = 1.0
    """Fraction of the delay drawn at random: 1 full jitter, 0.5 equal jitter, 0 none."""
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    """Where the jitter comes from; pass ``random.Random(seed)`` for a repeatable sequence."""

    def __post_init__(self) -> None:
        for name in ("base_s", "cap_s", "factor", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                    value):
                raise ValueError(f"RetryBackoff.{name} must be a finite number, got {value!r}")
        if self.base_s < 0 or self.cap_s < self.base_s:
            raise ValueError(f"RetryBackoff needs 0 <= base_s <= cap_s, got base_s={self.base_s} "
                             f"and cap_s={self.cap_s}")
        if self.factor < 1:
            raise ValueError(f"RetryBackoff.factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryBackoff.jitter must be in [0, 1], got {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The largest delay before retry number ``attempt`` (1 for the first retry)."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt counts retries from 1, got {attempt!r}")
        if self.base_s == 0 or self.factor == 1:
            return self.base_s
        # factor ** n overflows a float long before a loop could count that far: past the
        # attempt whose ceiling reaches the cap, the cap is the answer without computing it.
        if attempt - 1 >= math.log(self.cap_s / self.base_s, self.factor):
            return self.cap_s
        return min(self.cap_s, self.base_s * self.factor ** (attempt - 1))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        ceiling = self.ceiling(attempt)
        if self.jitter == 0:
            return ceiling
        # (1 - jitter) of the ceiling for sure, the rest at random: with jitter 1 this is
        # uniform(0, ceiling) as in redis-py's FullJitterBackoff, with jitter 0.5 the
        # enactor's lock back-off, draw for draw.
        return ceiling * (1.0 - self.jitter + self.jitter * self.rng.random())
