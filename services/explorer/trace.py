"""A schedule told in the incident's words: who published, checked, flipped, deleted, broke what.

Only the events that make the story are told (a plan published, a staleness check passed, a
lost lock, a flip, a refusal or rejection, a clean-up deletion), then the violation the
schedule stopped at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.core import events
from services.core.invariants import Violation
from services.explorer.gated import NewestRead
from services.explorer.world import Happening, ScheduleRecord


class LineKind(StrEnum):
    PUBLISH = "publish"
    READ = "read"
    """An enactor read the newest plan's generation."""
    CHECK = "check"
    LOCK_LOST = "lock_lost"
    FLIP = "flip"
    STALE_FLIP = "stale_flip"
    """An alias flipped to an older plan than the one it named."""
    REFUSED = "refused"
    REJECTED = "rejected"
    DELETE = "delete"
    LIVE_DELETE = "live_delete"
    """A clean-up deletion of a tree an alias or rollback still named."""
    VIOLATION = "violation"


@dataclass(frozen=True)
class TraceLine:
    step: int
    at_ms: int
    actor: str
    kind: LineKind
    text: str
    endpoint: str = ""
    """The endpoint the line is about (flips, locks, deletions, violations), if any."""
    generation: int = 0
    """The plan generation the line is about, if any."""

    def __str__(self) -> str:
        return f"step {self.step:>3}  t={self.at_ms / 1000:5.1f}s  {self.text}"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "at_ms": self.at_ms, "actor": self.actor,
                "kind": str(self.kind), "text": self.text, "endpoint": self.endpoint,
                "generation": self.generation}


def _flip(who: str, e: events.BatchCommitted) -> tuple[LineKind, str]:
    rollback = f"; rollback names plan {e.rollback}" if e.rollback else ""
    repaired = " (self-repair)" if e.repaired else ""
    if e.previous > e.generation:
        return LineKind.STALE_FLIP, (
            f"{who} flips {e.endpoint} back to plan {e.generation}: it named plan "
            f"{e.previous} (a stale plan{rollback}){repaired}")
    was = f" (was plan {e.previous}{rollback})" if e.previous else ""
    return LineKind.FLIP, f"{who} flips {e.endpoint} to plan {e.generation}{was}{repaired}"


def describe(event: events.Event, who: str,
             named_by: Mapping[str, str] | None = None) -> tuple[LineKind, str] | None:
    """The kind and words of one event, or None for events the story leaves out.

    ``named_by`` says who still named a tree that clean-up deleted (``the alias of E``).
    """
    if isinstance(event, events.PlanPublished):
        return LineKind.PUBLISH, f"{who} publishes plan {event.generation}"
    if isinstance(event, NewestRead):
        newest = f"plan {event.generation}" if event.generation else "no plan yet"
        return LineKind.READ, f"{who} reads the newest plan: {newest}"
    if isinstance(event, events.CheckPassed):
        return LineKind.CHECK, (f"{who} passes its staleness check with plan "
                                f"{event.generation} (applied {event.applied})")
    if isinstance(event, events.LockLost):
        return LineKind.LOCK_LOST, (f"{who} loses the lock of {event.endpoint} "
                                    f"({event.reason}) and backs off {event.backoff_s:.2f}s")
    if isinstance(event, events.BatchCommitted):
        return _flip(who, event)
    if isinstance(event, events.PlanRefused):
        return LineKind.REFUSED, (f"{who} refuses plan {event.generation} for {event.endpoint}: "
                                  f"{event.reason}")
    if isinstance(event, events.BatchRejected):
        return LineKind.REJECTED, (f"{who} cannot apply plan {event.generation} to "
                                   f"{event.endpoint}: {event.reason} ({event.detail})")
    if isinstance(event, events.TreeDeleted):
        if event.live:
            named = (named_by or {}).get(event.tree) or "an alias or rollback"
            return LineKind.LIVE_DELETE, (f"{who} clean-up deletes {event.tree} while {named} "
                                          "still names it")
        return LineKind.DELETE, f"{who} clean-up deletes {event.tree}"
    return None


def _line(happening: Happening, named_by: Mapping[str, str]) -> TraceLine | None:
    told = describe(happening.event, happening.actor, named_by)
    if told is None:
        return None
    kind, text = told
    event = happening.event
    return TraceLine(happening.step, happening.at_ms, happening.actor, kind, text,
                     str(getattr(event, "endpoint", "")), int(getattr(event, "generation", 0)))


def trace(record: ScheduleRecord) -> list[TraceLine]:
    """The story of a schedule in step order, ending with the violations it stopped at.

    (A window's flips are recorded together once its last batch is in, each at the step it
    committed: the story puts them back in their place.)
    """
    lines = [line for h in record.happenings if (line := _line(h, record.named_by)) is not None]
    lines.sort(key=lambda line: line.step)
    lines += [_violation_line(record, v) for v in record.violations]
    return lines


def _violation_line(record: ScheduleRecord, violation: Violation) -> TraceLine:
    return TraceLine(record.steps, record.end_ms, "zone", LineKind.VIOLATION, violation.text,
                     violation.endpoint)
