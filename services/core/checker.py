"""``dnsrace check``: read the history and report every violation of I1-I3 with its witnesses.

The checker replays the zone's recorded events in commit order (the zone's serial) and the DNS
server's in the order seen, and keeps, per endpoint, the tree its alias names and the tree its
rollback names (from committed batches). Then:

- I1 no empty answer: a clean-up deleted the tree an alias named (the name now answers
  nothing), or the DNS server was seen answering an endpoint with no address;
- I2 no regression: a committed flip moved an alias to an older generation, or the DNS
  server was seen serving an older generation than it had served before;
- I3 never delete a live tree: a deletion the zone reported as live (an alias or rollback
  named it at commit time).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.cascade_invariants import check_cascade_part2
from services.core.events import (
    BatchCommitted,
    BatchRejected,
    CheckPassed,
    CollapseSeen,
    DnsAnswer,
    Event,
    FaultEnded,
    FaultStarted,
    LeaseLost,
    LeaseRegained,
    OperatorAction,
    PlanPublished,
    Resumed,
    RoundCompleted,
    Stalled,
    TreeDeleted,
)
from services.core.invariants import Invariant, Violation
from services.core.leases import check_leases


def describe(event: Event) -> str:
    """One event in the incident's words."""
    who = event.source or "?"
    match event:
        case PlanPublished(generation=g):
            return f"{who}: plan {g} published"
        case CheckPassed(generation=g, applied=a):
            return f"{who}: staleness check passed for plan {g} (applied was {a})"
        case Stalled(point=p, generation=g, endpoint=e):
            return f"{who}: stalled at {p} with plan {g}" + (f" on {e}" if e else "")
        case Resumed(point=p, generation=g):
            return f"{who}: resumed at {p} with plan {g}"
        case BatchCommitted(endpoint=e, generation=g, previous=p, rollback=r):
            arrow = "BACK to" if g < p else "to"
            return f"{who}: flipped {e} from plan {p} {arrow} plan {g} (rollback -> plan {r})"
        case BatchRejected(endpoint=e, generation=g, reason=r):
            return f"{who}: batch for plan {g} on {e} rejected: {r}"
        case TreeDeleted(tree=t, live=live):
            return f"{who}: clean-up deleted {t}" + (" WHILE AN ALIAS NAMED IT" if live else "")
        case DnsAnswer(endpoint=e, generation=g, addresses=n):
            return f"dns: {e} answered {n} address(es) from plan {g}"
        case FaultStarted(type=t, target=target, params=p):
            return f"{who}: fault {t} on {target} started {p or ''}".rstrip()
        case FaultEnded(type=t, target=target, why=why):
            return f"{who}: fault {t} on {target} ended ({why})"
        case LeaseLost(droplet=d, az=az):
            return f"{who}: lease of droplet {d} ({az}) lost"
        case LeaseRegained(droplet=d, attempt=n):
            return f"{who}: lease of droplet {d} established (attempt {n})"
        case OperatorAction(action=a, target=t, detail=d):
            return f"operators: {a} {t} {d}".rstrip()
        case CollapseSeen(lasted_s=s):
            return f"{who}: DWFM in congestive collapse for {s:.0f} s with DNS answering"
        case RoundCompleted(generation=g, committed=c, rejected=r, deleted=d):
            return f"{who}: round for plan {g} done: {c} flips, {r} rejected, {d} deletions"
        case _:
            return f"{who}: {event.kind}"


@dataclass
class _Endpoint:
    alias: BatchCommitted | None = None
    served: DnsAnswer | None = None
    empty: Violation | None = None


def check(events: list[Event]) -> list[Violation]:
    """Every violation of I1-I3 and of the cascade's C1 in these events, in time order."""
    state: dict[str, _Endpoint] = {}
    violations: list[Violation] = []
    # The zone's events in the order their batches committed (the zone's serial, one count for
    # every writer), not in the order they were recorded: each enactor records its commits
    # after them, a window at a time, so two enactors' records can reach the history out of
    # commit order (a stale flip recorded after the clean-up that deleted its tree).
    zone = sorted((e for e in events if isinstance(e, BatchCommitted | TreeDeleted)),
                  key=lambda e: e.serial)
    answers = [e for e in events if isinstance(e, DnsAnswer)]
    for event in [*zone, *answers]:
        match event:
            case BatchCommitted(endpoint=endpoint):
                ep = state.setdefault(endpoint, _Endpoint())
                if event.generation < event.previous:
                    violations.append(Violation(
                        Invariant.I2, endpoint,
                        f"{endpoint} flipped back from plan {event.previous} to plan "
                        f"{event.generation}", event.at_ms, [event]))
                ep.alias = event
            case TreeDeleted(endpoint=endpoint):
                ep = state.setdefault(endpoint, _Endpoint())
                if event.live:
                    violations.append(Violation(
                        Invariant.I3, endpoint,
                        f"{event.tree} deleted while an alias or rollback named it",
                        event.at_ms, [event]))
                if ep.alias is not None and ep.alias.generation == event.generation:
                    violations.append(Violation(
                        Invariant.I1, endpoint,
                        f"{endpoint} names deleted {event.tree}: it answers no address",
                        event.at_ms, [ep.alias, event]))
            case DnsAnswer(endpoint=endpoint):
                ep = state.setdefault(endpoint, _Endpoint())
                _observe_answer(ep, event, violations)
    violations += check_leases(events)
    violations += check_cascade_part2(events)
    violations.sort(key=lambda v: v.at_ms)
    return violations


def _observe_answer(ep: _Endpoint, event: DnsAnswer,
                    violations: list[Violation]) -> None:
    if event.addresses == 0:
        if ep.empty is None:
            ep.empty = Violation(Invariant.I1, event.endpoint,
                                 f"{event.endpoint} answered NOERROR with no address",
                                 event.at_ms, [event])
            violations.append(ep.empty)
        else:
            ep.empty.repeats += 1
            ep.empty.witnesses[1:] = [event]
        return
    ep.empty = None
    if ep.served is not None and event.generation < ep.served.generation:
        violations.append(Violation(
            Invariant.I2, event.endpoint,
            f"{event.endpoint} served plan {event.generation} after plan "
            f"{ep.served.generation}", event.at_ms, [ep.served, event]))
    ep.served = event


def format_report(violations: list[Violation], events: list[Event]) -> str:
    if not violations:
        return f"checked {len(events)} events: no violation of I1, I2, I3 or C1"
    lines = [f"checked {len(events)} events: {len(violations)} violation(s)"]
    t0 = events[0].at_ms if events else 0
    for v in violations:
        more = f" (seen {v.repeats} times)" if v.repeats > 1 else ""
        lines.append(f"\n{v.invariant.heading}: {v.summary}{more}")
        for w in v.witnesses:
            lines.append(f"  +{(w.at_ms - t0) / 1000:8.3f}s  {describe(w)}")
    counts = {inv: sum(v.invariant is inv for v in violations) for inv in Invariant}
    lines.append("\n" + ", ".join(f"{inv.name}: {n}" for inv, n in counts.items()))
    return "\n".join(lines)
