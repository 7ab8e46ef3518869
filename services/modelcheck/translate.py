"""Fit a Spin trail to the explorer: the schedule of the real code that does what the trail did.

The model has no clock (models/dnsrace.pml, "What is abstracted"): an enactor may take a lock
the moment another's batch committed. The explorer has logical time: a lock is held for a
lease of 10 steps from the holder's read, and an enactor that finds it held backs off and
sleeps, during which others must move. So a trail is played against the real code step by
step, each model step by the explorer actor that runs it, with two kinds of extra steps
where the explorer's time needs them:

- **waiting**: an enactor reads an endpoint whose lock is still held, backs off and will read
  again (the model's read simply happened later);
- **idle reads**: an actor whose part of the trail is over reads (the newest plan, the
  staleness check) and, finding nothing to do, writes nothing.

Steps that touch different things may trade places (:func:`~services.modelcheck.trail.
predecessors`). Whatever is chosen, each real round-trip must do what its model step did (the
same plan read, the same flip with the same previous and rollback generations, the same
deletion); an idle read that writes, or a step that does something else, ends that attempt.
The attempts are searched depth first over the points where more than one actor could go,
as the explorer's own exhaustive search does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from services.core import events, names
from services.core.invariants import Violation
from services.errors import DnsraceError
from services.modelcheck.trail import (
    ACTOR_NAMES,
    PLANNER,
    ExplorerStep,
    ModelStep,
    Move,
    endpoint_names,
    explorer_steps,
    predecessors,
)

NEWEST_READ = "newest_read"
"""The explorer's own event for a read of the newest generation (``world.NewestRead``)."""
IGNORED = {events.RoundCompleted.kind}
ZONE_WRITES = (events.PlanPublished, events.BatchCommitted, events.TreeDeleted)


class TrailDiverged(DnsraceError):
    """The real code did not do what the trail's step did (or could not be scheduled to)."""


class Untranslatable(DnsraceError):
    """No explorer schedule within the budget does what the trail did."""


class Judged(Enum):
    TOOK = "took"
    """The round-trip did what its model step did."""
    WAITED = "waited"
    """An extra step: a read that found the lock held, or an idle read."""


def judge(step: ExplorerStep, happened: Sequence[events.Event],
          endpoints: Sequence[str]) -> Judged:
    """Did this round-trip of the real code do what the model step did? TrailDiverged if not."""
    model = step.step
    name = endpoints[model.endpoint] if model.endpoint >= 0 else ""
    seen = [e for e in happened if e.kind not in IGNORED]
    if step.move is Move.READ and len(seen) == 1 and isinstance(seen[0], events.LockLost) \
            and seen[0].reason == "lock_held":
        return Judged.WAITED
    if _expected(step, model, name, seen):
        return Judged.TOOK
    told = ", ".join(e.kind for e in seen) or "nothing to record"
    raise TrailDiverged(f"{ACTOR_NAMES[model.actor]} was to {step.move} "
                        f"{name or ''} plan {model.generation}, and did: {told}")


def _expected(step: ExplorerStep, model: ModelStep, name: str,
              seen: Sequence[events.Event]) -> bool:
    move, g = step.move, model.generation
    if move in (Move.GET, Move.UPTODATE, Move.READ, Move.SKIP, Move.TREES, Move.REFS,
                Move.MISSING, Move.REFERENCED):
        return not seen
    if len(seen) != 1:
        return False
    event = seen[0]
    if move is Move.NEWEST:
        return event.kind == NEWEST_READ and getattr(event, "generation", None) == g
    match event:
        case events.PlanPublished(generation=generation):
            return move is Move.PUBLISH and generation == g
        case events.CheckPassed(generation=generation, applied=applied):
            return move is Move.CHECK and (generation, applied) == (g, model.applied)
        case events.PlanRefused(endpoint=endpoint, generation=generation):
            return move is Move.REFUSE and (endpoint, generation) == (name, g)
        case events.BatchCommitted():
            return move is Move.COMMIT and (
                event.endpoint, event.generation, event.previous, event.rollback) == (
                name, g, model.previous, model.rollback)
        case events.LockLost(endpoint=endpoint, generation=generation, reason=reason):
            return move is Move.LOST and (endpoint, generation) == (name, g) and \
                reason != "lock_held"
        case events.BatchRejected(endpoint=endpoint, generation=generation, reason=reason):
            return move is Move.REJECTED and (endpoint, generation, str(reason)) == (
                name, g, model.reason)
        case events.TreeDeleted(tree=tree):
            return move is Move.DELETE and tree == names.tree_name(g, name)
    return False


class TrailChooser:
    """An explorer chooser that plays a trail: it sees what each step recorded (``observe``,
    wired to the explorer's history) and picks, among the actors that may run, one whose
    next model step may go now; ``decisions`` picks at the points where several may."""

    def __init__(self, plan: Sequence[ExplorerStep], before: Sequence[frozenset[int]],
                 endpoints: Sequence[str], decisions: Sequence[int], max_steps: int) -> None:
        self.plan = plan
        self.before = before
        self.endpoints = endpoints
        self.decisions = decisions
        self.max_steps = max_steps
        self.queue: dict[int, list[int]] = {}
        for index, step in enumerate(plan):
            self.queue.setdefault(step.step.actor, []).append(index)
        self.taken: set[int] = set()
        self.points: list[tuple[int, int]] = []
        """(actors that could go, the one chosen) at every point with a choice."""
        self.waited = 0
        self.running: int | None = None
        self.happened: list[events.Event] = []

    @property
    def complete(self) -> bool:
        return len(self.taken) == len(self.plan)

    def observe(self, actor: int, event: events.Event) -> None:
        self.happened.append(event)

    def _next(self, actor: int) -> int | None:
        waiting = self.queue.get(actor, [])
        return waiting[0] if waiting else None

    def _judge_running(self) -> None:
        actor, happened = self.running, self.happened
        self.running, self.happened = None, []
        if actor is None:
            return
        index = self._next(actor)
        if index is None:  # an idle read of an actor whose part is over
            writes = [e.kind for e in happened if isinstance(e, ZONE_WRITES)]
            if writes:
                raise TrailDiverged(f"{ACTOR_NAMES[actor]}, beyond its part of the trail, "
                                    f"wrote ({', '.join(writes)})")
            self.waited += 1
            return
        if judge(self.plan[index], happened, self.endpoints) is Judged.WAITED:
            self.waited += 1
            return
        self.taken.add(index)
        self.queue[actor].pop(0)

    def finish(self) -> None:
        """Judge the last step (the explorer stops choosing once it found a violation)."""
        self._judge_running()

    def candidates(self, enabled: Sequence[int]) -> list[int]:
        ready = []
        idle = []
        for actor in enabled:
            index = self._next(actor)
            if index is None:
                if actor != PLANNER:  # the planner's only step is to publish
                    idle.append(actor)
            elif self.before[index] <= self.taken:
                ready.append((index, actor))
        return [actor for _, actor in sorted(ready)] + idle

    def choose(self, step: int, enabled: Sequence[int], current: int | None) -> int:
        self._judge_running()
        if self.complete:
            raise TrailDiverged("the trail is over and the real code broke no invariant")
        if step >= self.max_steps:
            raise TrailDiverged(f"more than {self.max_steps} steps")
        options = self.candidates(enabled)
        if not options:
            raise TrailDiverged(f"step {step + 1}: none of the actors that can run "
                                f"({', '.join(ACTOR_NAMES[a] for a in enabled)}) may take "
                                "its next step of the trail now")
        pick = 0
        if len(options) > 1:
            depth = len(self.points)
            pick = min(self.decisions[depth], len(options) - 1) if depth < len(
                self.decisions) else 0
            self.points.append((len(options), pick))
        self.running = options[pick]
        return options[pick]


class Played(Protocol):
    """What the explorer returns for one schedule (``ScheduleRecord``)."""

    @property
    def choices(self) -> tuple[int, ...]: ...

    @property
    def violations(self) -> Sequence[Violation]: ...


Play = Callable[[TrailChooser], Awaitable[Played]]
"""Runs one schedule of the real code with this chooser, its history wired to ``observe``."""


@dataclass
class Translation:
    """A trail as an explorer schedule that does the same, step for step."""

    model_steps: int
    choices: tuple[int, ...]
    waited: int
    """Extra steps: reads that found a lock held, and idle reads."""
    attempts: int
    record: Played
    violations: list[Violation] = field(default_factory=list)

    @property
    def encoded(self) -> str:
        """As ``dnsrace explore --replay`` takes it."""
        return "".join(str(c) for c in self.choices)


async def translate(steps: Sequence[ModelStep], play: Play, endpoints: int, *,
                    attempts: int = 3000, max_steps: int | None = None) -> Translation:
    """The explorer schedule that plays ``steps``; Untranslatable if none is found."""
    plan = explorer_steps(steps)
    before = predecessors(plan, endpoints)
    shown = endpoint_names(endpoints)
    limit = max_steps if max_steps is not None else 3 * len(plan) + 60
    decisions: list[int] = []
    why = ""
    for attempt in range(1, attempts + 1):
        chooser = TrailChooser(plan, before, shown, decisions, limit)
        try:
            record = await play(chooser)
            chooser.finish()
            if chooser.complete and record.violations:
                return Translation(len(steps), tuple(record.choices), chooser.waited, attempt,
                                   record, list(record.violations))
            why = ("the real code stopped before the trail's end" if record.violations else
                   "the schedule ended with no violation")
        except TrailDiverged as e:
            why = str(e)
        points = chooser.points
        while points and points[-1][1] + 1 >= points[-1][0]:
            points.pop()
        if not points:
            raise Untranslatable(f"no schedule of the real code does what the trail did "
                                 f"({attempt} tried, every choice exhausted; the last: {why})")
        decisions = [pick for _, pick in points[:-1]] + [points[-1][1] + 1]
    raise Untranslatable(f"no schedule found in {attempts} attempts (the last: {why})")
