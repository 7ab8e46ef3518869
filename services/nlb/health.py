"""NLB health checks as a pure state machine: targets, thresholds, a checker of bounded capacity.

A target (an instance registered at launch, as an auto-scaling group does) starts ``initial``
and is *in service* (``healthy``) after ``healthy_threshold`` passing checks in a row, out of
service (``unhealthy``) after ``unhealthy_threshold`` failing ones. A check that times out fails.

The 2025 flaw this reproduces: a target whose network state had not propagated could still pass
a check (the check reached the host, not the instance's network), so the checker put instances
without connectivity into service; ``legacy_in_service_on_register`` models that by starting
targets healthy. The checker has a bounded capacity (``checks_per_round``): when many targets
fail and time out, each round reaches fewer of them, and results go stale and flap.

Nothing reads a clock or a socket: the caller runs the checks and reports each result with
``now_s``.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class TargetState(enum.Enum):
    INITIAL = "initial"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class HealthSettings:
    """How the health checker judges targets."""

    interval_s: float = 1.0
    """Seconds between rounds."""
    timeout_s: float = 0.5
    """A check not answered within this long fails."""
    healthy_threshold: int = 2
    """Passing checks in a row that put a target in service."""
    unhealthy_threshold: int = 2
    """Failing checks in a row that take a target out of service."""
    checks_per_round: int = 64
    """The checker's capacity: at most this many checks a round (bounded, so it degrades)."""
    legacy_in_service_on_register: bool = True
    """2025: a newly registered target counts in service before any check passed."""

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.timeout_s <= 0:
            raise ValueError("health check interval and timeout must be > 0")
        if min(self.healthy_threshold, self.unhealthy_threshold, self.checks_per_round) < 1:
            raise ValueError("health check thresholds and capacity must be >= 1")


@dataclass(frozen=True)
class Transition:
    """A target changed state: what the NLB (and the history) hears of."""

    target: str
    az: str
    was: TargetState
    now: TargetState
    at_s: float


@dataclass
class Target:
    name: str
    az: str
    state: TargetState
    passes: int = 0
    fails: int = 0
    last_checked_s: float | None = None


@dataclass
class HealthChecker:
    """Every registered target's health, and which targets the next round checks."""

    settings: HealthSettings
    targets: dict[str, Target] = field(default_factory=dict)
    _order: deque[str] = field(default_factory=deque)

    def register(self, name: str, az: str, now_s: float) -> Transition | None:
        """A target joins (at launch). In legacy it counts in service straight away."""
        if name in self.targets:
            return None
        legacy = self.settings.legacy_in_service_on_register
        start = TargetState.HEALTHY if legacy else TargetState.INITIAL
        self.targets[name] = Target(name, az, start)
        self._order.append(name)
        if start is TargetState.HEALTHY:
            return Transition(name, az, TargetState.INITIAL, start, now_s)
        return None

    def deregister(self, name: str) -> None:
        if self.targets.pop(name, None) is not None:
            self._order.remove(name)

    def due(self) -> list[str]:
        """This round's targets: at most ``checks_per_round``, least recently checked first."""
        n = min(self.settings.checks_per_round, len(self._order))
        chosen = [self._order[i] for i in range(n)]
        self._order.rotate(-n)
        return chosen

    def report(self, name: str, passed: bool, now_s: float) -> Transition | None:
        """One check's result (a timeout is ``passed=False``); the transition if any."""
        target = self.targets.get(name)
        if target is None:
            return None
        target.last_checked_s = now_s
        if passed:
            target.passes, target.fails = target.passes + 1, 0
            if (target.state is not TargetState.HEALTHY
                    and target.passes >= self.settings.healthy_threshold):
                return self._move(target, TargetState.HEALTHY, now_s)
        else:
            target.passes, target.fails = 0, target.fails + 1
            if (target.state is not TargetState.UNHEALTHY
                    and target.fails >= self.settings.unhealthy_threshold):
                return self._move(target, TargetState.UNHEALTHY, now_s)
        return None

    def healthy_share(self, az: str) -> float | None:
        """The share of ``az``'s targets in service (None when it has none)."""
        in_az = [t for t in self.targets.values() if t.az == az]
        if not in_az:
            return None
        return sum(t.state is TargetState.HEALTHY for t in in_az) / len(in_az)

    def healthy(self, az: str) -> list[str]:
        in_service = TargetState.HEALTHY
        return [t.name for t in self.targets.values() if t.az == az and t.state is in_service]

    @staticmethod
    def _move(target: Target, to: TargetState, now_s: float) -> Transition:
        was, target.state = target.state, to
        return Transition(target.name, target.az, was, to, now_s)
