"""The AWS SDKs' *standard* retry mode, as a pure policy.

Up to 3 attempts in all; between them, exponential back-off with full jitter (uniform in
[0, min(cap, base * 2 ** (retry - 1))]).  Retried: throttling and server errors (HTTP 5xx),
timeouts and connection errors, DNS failures that a new look-up may cure (timeouts, SERVFAIL).
Not retried: an empty answer (NODATA, NXDOMAIN) from a cache, which a retry within its negative
TTL would only read again.  A retry may go to another of the answer's addresses (the caller's
choice; see :mod:`loadgen.fleet`).  Time is in the compressed scale of the scenarios, so the
base is 50 ms and the cap 1 s (the SDKs use 1 s and 20 s).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from loadgen.outcome import Outcome
from services.core.backoff import RetryBackoff

MAX_ATTEMPTS = 3
RETRYABLE: frozenset[Outcome] = frozenset({
    Outcome.HTTP_ERROR, Outcome.CONNECT_ERROR, Outcome.TIMEOUT,
    Outcome.DNS_TIMEOUT, Outcome.DNS_SERVFAIL,
})


@dataclass(frozen=True)
class StandardRetry:
    max_attempts: int = MAX_ATTEMPTS
    backoff: RetryBackoff = field(
        default_factory=lambda: RetryBackoff(base_s=0.05, cap_s=1.0, factor=2.0, jitter=1.0))

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")

    @classmethod
    def seeded(cls, rng: random.Random, max_attempts: int = MAX_ATTEMPTS) -> StandardRetry:
        return cls(max_attempts, RetryBackoff(base_s=0.05, cap_s=1.0, factor=2.0, jitter=1.0,
                                              rng=rng))

    def should_retry(self, outcome: Outcome, attempt: int) -> bool:
        """After attempt number ``attempt`` (from 1) ended with ``outcome``: try again?"""
        return outcome in RETRYABLE and attempt < self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt ``attempt`` failed, before the next one."""
        return self.backoff.delay(attempt)
