"""The supervisor's decisions, without processes or sockets: when to restart, what a crash
fault kills.

A process that exits on its own is restarted after a back-off that doubles with each crash in a
row (0.2 s, 0.4 s ... capped at 5 s) and starts again from the first step once the process has
stayed up for ``stable_s``. A crash fault holds its processes down until its expiry; the
restart after it is not a crash and does not count towards the back-off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core import names
from services.core.backoff import RetryBackoff
from services.core.faults import FaultType

RESTART_BACKOFF = RetryBackoff(base_s=0.2, cap_s=5.0, jitter=0.0)


def crash_targets(kind: FaultType, target: str, processes: list[str] | tuple[str, ...]
                  ) -> list[str]:
    """The supervised processes a crash fault stops (the endpoints of every AZ when isolated)."""
    if kind is FaultType.REDIS_RESTART:
        wanted = ["redis"]
    elif target in names.AZS:
        wanted = [f"enactor_{target.removeprefix('use1-')}"]
    elif target == "endpoints":
        wanted = [p for p in processes if p == "endpoints" or p.startswith("endpoints_")]
    else:
        wanted = [target]
    return [p for p in wanted if p in processes]


@dataclass
class Restarts:
    """Per process: crashes in a row and when it may start again."""

    backoff: RetryBackoff = RESTART_BACKOFF
    stable_s: float = 10.0
    crashes: dict[str, int] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)
    due_at: dict[str, float] = field(default_factory=dict)
    held_until: dict[str, float] = field(default_factory=dict)
    """Processes a crash fault holds down (monotonic seconds)."""

    def started(self, name: str, now: float) -> None:
        self.started_at[name] = now
        self.due_at.pop(name, None)

    def exited(self, name: str, now: float) -> float:
        """A process was found exited; when to restart it (held by a fault: at its end)."""
        if name in self.due_at:
            return self.due_at[name]
        if name in self.held_until:
            due = self.held_until[name]
        else:
            if now - self.started_at.get(name, now) >= self.stable_s:
                self.crashes[name] = 0
            self.crashes[name] = self.crashes.get(name, 0) + 1
            due = now + self.backoff.delay(self.crashes[name])
        self.due_at[name] = due
        return due

    def hold(self, name: str, until: float) -> None:
        """A crash fault: the process stays down until ``until``, then restarts at once."""
        self.held_until[name] = until
        self.due_at[name] = until

    def released(self, name: str) -> bool:
        """Was this restart the end of a crash fault (not a crash)? Forget the hold."""
        return self.held_until.pop(name, None) is not None
