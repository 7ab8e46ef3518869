"""C2 and C3, the cascade's part 2, judged from the history's instance and NLB events. Pure.

- **C2** no instance in service before it has connectivity: a :class:`TargetInService` for an
  instance whose :class:`InstanceLaunched` is known and whose :class:`NetworkPropagated` has not
  come yet is a violation. History can be lost (a Redis restart drops recent stream entries), so
  an instance whose launch the history does not hold is *unknown*, never a violation: C2 judges
  only instances whose propagation record it knows.
- **C3** AZ failover never removes more than the velocity limit: within any velocity window
  (``velocity_window_s``), an NLB's :class:`AzFailedAway` events may not exceed the budget of
  ``velocity_control`` (at most ``velocity_max_share`` of its AZs, at least one, never all).
  Each event carries the limit configured when it happened; :data:`C3_MAX_SHARE` and
  :data:`C3_WINDOW_S` are the defaults (and judge older histories).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from services.core.events import (
    AzFailedAway,
    Event,
    InstanceLaunched,
    NetworkPropagated,
    TargetInService,
)
from services.core.invariants import Invariant, Violation

C3_MAX_SHARE = 1 / 3
"""``velocity_control``'s default: the share of an NLB's AZs failover may remove in a window."""
C3_WINDOW_S = 60.0


def velocity_budget(azs: int, max_share: float = C3_MAX_SHARE) -> int:
    """AZs failover may remove within one window: at least one, never the last."""
    if azs <= 1:
        return 0
    return min(azs - 1, max(1, math.floor(azs * max_share + 1e-9)))


@dataclass
class C2Report:
    violations: list[Violation] = field(default_factory=list)
    unknown: int = 0
    """Targets put in service whose launch the history does not hold (not judged)."""


def check_connectivity(events: list[Event]) -> C2Report:
    """C2 over these events (time order)."""
    launched: dict[str, InstanceLaunched] = {}
    propagated: set[str] = set()
    report = C2Report()
    for event in events:
        match event:
            case InstanceLaunched(instance=i):
                launched[i] = event
                propagated.discard(i)
            case NetworkPropagated(instance=i):
                propagated.add(i)
            case TargetInService(instance=i, az=az):
                if i not in launched:
                    report.unknown += 1
                elif i not in propagated:
                    report.violations.append(Violation(
                        Invariant.C2, event.nlb or "nlb",
                        f"{i} in {az} put in service by the health checker "
                        f"{(event.at_ms - launched[i].at_ms) / 1000:.1f} s after its launch, "
                        "before Network Manager propagated its network state",
                        event.at_ms, [launched[i], event]))
    return report


def check_velocity(events: list[Event]) -> list[Violation]:
    """C3 over these events (time order): every removal beyond the window's budget, by the
    velocity limit the NLB had configured (``velocity_max_share``, ``velocity_window_s``)."""
    recent: dict[str, deque[AzFailedAway]] = {}
    violations: list[Violation] = []
    for event in events:
        if not isinstance(event, AzFailedAway):
            continue
        max_share = C3_MAX_SHARE if event.max_share is None else event.max_share
        window_s = C3_WINDOW_S if event.window_s is None else event.window_s
        window = recent.setdefault(event.nlb, deque())
        while window and event.at_ms - window[0].at_ms >= window_s * 1000:
            window.popleft()
        window.append(event)
        budget = velocity_budget(event.azs, max_share)
        if len(window) > budget:
            violations.append(Violation(
                Invariant.C3, event.nlb,
                f"failover removed {len(window)} of {event.azs} AZs from {event.nlb}'s name "
                f"within {window_s:.0f} s ({', '.join(e.az for e in window)}); "
                f"velocity control allows {budget}",
                event.at_ms, list(window)))
    return violations


def check_cascade_part2(events: list[Event]) -> list[Violation]:
    """C2 and C3 violations, for ``dnsrace check``."""
    return check_connectivity(events).violations + check_velocity(events)
