"""C1, after DNS is repaired leases recover: judged from the history's lease events. Pure.

The DWFM hosts record :class:`~services.core.events.DwfmStarted` (how many droplets each owns),
:class:`~services.core.events.LeaseLost` and :class:`~services.core.events.LeaseRegained`; the
DNS repair is an :class:`~services.core.events.OperatorAction` ``dns_repair``. C1 holds when,
within :data:`C1_RECOVERY_S` of each repair that found leases missing, 95 % of the droplets hold
a lease again with no operator action on DWFM in between (a recovery the operators forced is not
one the system made). A repair too close to the end of the history to tell is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core.events import (
    CollapseSeen,
    DwfmStarted,
    Event,
    LeaseLost,
    LeaseRegained,
    OperatorAction,
)
from services.core.invariants import Invariant, Violation

C1_RECOVERY_S = 20.0
"""Leases must be back this soon after the DNS repair (issue 14: queue_throttle does it)."""
RECOVERED_SHARE = 0.95


@dataclass
class _Fleet:
    droplets: dict[str, int] = field(default_factory=dict)
    lost: set[tuple[str, str]] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.droplets.values())

    def missing_too_many(self) -> bool:
        return len(self.lost) > (1 - RECOVERED_SHARE) * self.total


@dataclass
class _Repair:
    event: OperatorAction
    lost: int
    witnesses: list[Event] = field(default_factory=list)
    operators: OperatorAction | None = None


def check_leases(events: list[Event]) -> list[Violation]:
    """Every violation of C1 in these events (time order)."""
    fleet = _Fleet()
    pending: list[_Repair] = []
    violations: list[Violation] = []
    last_ms = events[-1].at_ms if events else 0

    def judge(repair: _Repair, now_ms: int, recovered: bool) -> None:
        took_s = (now_ms - repair.event.at_ms) / 1000
        if recovered and took_s <= C1_RECOVERY_S and repair.operators is None:
            return
        if recovered:
            how = f"95 % held only {took_s:.1f} s after it" + (
                " and after the operators acted on DWFM" if repair.operators else ""
            )
        else:
            how = f"still {len(fleet.lost)} of {fleet.total} lost {took_s:.1f} s after it"
        violations.append(
            Violation(
                Invariant.C1,
                "dwfm",
                f"{repair.lost} of {fleet.total} droplet leases were lost at the DNS repair; {how} "
                f"(C1 wants 95 % within {C1_RECOVERY_S:.0f} s, without operators)",
                repair.event.at_ms + int(C1_RECOVERY_S * 1000),
                [repair.event, *repair.witnesses],
            )
        )

    for event in events:
        match event:
            case DwfmStarted(host=host, droplets=n):
                fleet.droplets[host] = n
                fleet.lost = {(h, d) for h, d in fleet.lost if h != host}
            case LeaseLost(host=host, droplet=d):
                fleet.lost.add((host, d))
            case LeaseRegained(host=host, droplet=d):
                fleet.lost.discard((host, d))
            case OperatorAction(action="dns_repair") if fleet.missing_too_many():
                pending.append(_Repair(event, len(fleet.lost)))
            case OperatorAction():
                for repair in pending:
                    repair.operators = repair.operators or event
                    repair.witnesses.append(event)
            case CollapseSeen():
                for repair in pending:
                    repair.witnesses.append(event)
        for repair in list(pending):
            overdue = event.at_ms - repair.event.at_ms > C1_RECOVERY_S * 1000
            if not fleet.missing_too_many() or overdue:
                pending.remove(repair)
                judge(repair, event.at_ms, not fleet.missing_too_many())
    for repair in pending:
        if last_ms - repair.event.at_ms > C1_RECOVERY_S * 1000:
            judge(repair, last_ms, False)
    return violations
