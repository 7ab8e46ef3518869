"""A Spin counterexample read back: the model's steps, in the incident's words and as the
explorer's actors.

Every step of models/dnsrace.pml prints one line, ``MC <actor> <what> <numbers>``; ``spin -t``
replays a trail and prints them in order. Actor 0 is the planner and 1-3 the enactors of
use1-az1, use1-az2 and use1-az4, as in ``dnsrace explore``. Each model step is one store
round-trip of that actor in the real code, except reading the newest plan, which the model
does in one step and the explorer in two (the generation, then the plan's body: it is
immutable, so nobody can tell when it was read).

Which steps may trade places without changing what anyone reads (:func:`predecessors`) is
what lets :mod:`services.modelcheck.translate` fit a trail to the explorer's timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.core import names
from services.errors import DnsraceError

ACTOR_NAMES: tuple[str, ...] = ("planner", *names.AZS)
PLANNER = 0


class Move(StrEnum):
    """What one step of the model did (the word after the actor in an ``MC`` line)."""

    PUBLISH = "publish"
    NEWEST = "newest"
    GET = "get"
    """The explorer's second round-trip of reading the newest plan (never in a trail)."""
    CHECK = "check"
    UPTODATE = "uptodate"
    READ = "read"
    SKIP = "skip"
    REFUSE = "refuse"
    COMMIT = "commit"
    LOST = "lost"
    REJECTED = "rejected"
    TREES = "trees"
    REFS = "refs"
    DELETE = "delete"
    MISSING = "missing"
    REFERENCED = "referenced"


_ENDPOINT_MOVES = {Move.READ, Move.SKIP, Move.REFUSE, Move.COMMIT, Move.LOST, Move.REJECTED,
                   Move.DELETE, Move.MISSING, Move.REFERENCED}
_WRITES = {Move.PUBLISH, Move.COMMIT, Move.DELETE}


@dataclass(frozen=True)
class ModelStep:
    actor: int
    move: Move
    generation: int = 0
    endpoint: int = -1
    """Index into the endpoints (0 regional, 1 FIPS, 2 dual-stack); -1 for none."""
    applied: int = 0
    """check / uptodate: the generation the regional alias named."""
    previous: int = 0
    """commit: the generation the alias named before."""
    rollback: int = 0
    """commit: the generation the rollback names after."""
    reason: str = ""
    """rejected: why (change_batch.lua's reason); skip: ``applied`` or ``newer``."""
    empty: int = -1
    """publish (-DEMPTY_PLANS): the endpoint this plan gives no healthy address, or -1."""

    @property
    def writes(self) -> bool:
        return self.move in _WRITES


class TrailError(DnsraceError, ValueError):
    """A line of a trail is not one the model prints."""


def parse_line(line: str) -> ModelStep:
    parts = line.split()
    try:
        if parts[0] != "MC":
            raise ValueError
        actor, move, numbers = int(parts[1]), Move(parts[2]), parts[3:]
        if move is Move.PUBLISH:
            return ModelStep(actor, move, generation=int(numbers[0]),
                             empty=int(numbers[1]) if len(numbers) > 1 else -1)
        if move is Move.NEWEST:
            return ModelStep(actor, move, generation=int(numbers[0]))
        if move in (Move.CHECK, Move.UPTODATE):
            return ModelStep(actor, move, generation=int(numbers[0]), applied=int(numbers[1]))
        if move in (Move.TREES, Move.REFS):
            return ModelStep(actor, move)
        endpoint, generation = int(numbers[0]), int(numbers[1])
        if move is Move.COMMIT:
            return ModelStep(actor, move, generation, endpoint, previous=int(numbers[2]),
                             rollback=int(numbers[3]))
        if move in (Move.REJECTED, Move.SKIP):
            return ModelStep(actor, move, generation, endpoint, reason=numbers[2])
        return ModelStep(actor, move, generation, endpoint)
    except (ValueError, IndexError):
        raise TrailError(f"not a line the model prints: {line!r}") from None


def read_trail(lines: Sequence[str]) -> list[ModelStep]:
    return [parse_line(line) for line in lines]


def endpoint_names(count: int) -> tuple[str, ...]:
    """The explorer's endpoints, in the model's order (``ExploreConfig.endpoint_names``)."""
    return names.endpoints(max(0, count - len(names.NAMED_ENDPOINTS)))[:count]


def tell(steps: Sequence[ModelStep], endpoints: int) -> list[str]:
    """The trail in the incident's words, one line a step."""
    shown = endpoint_names(endpoints)
    lines = []
    for number, step in enumerate(steps, start=1):
        who = ACTOR_NAMES[step.actor]
        e = shown[step.endpoint] if step.endpoint >= 0 else ""
        tree = names.tree_name(step.generation, e) if e else ""
        g = step.generation
        text = {
            Move.PUBLISH: f"publishes plan {g}" + (
                f", which gives {shown[step.empty]} no address" if step.empty >= 0 else ""),
            Move.NEWEST: f"reads the newest plan: {f'plan {g}' if g else 'no plan yet'}",
            Move.CHECK: f"passes its staleness check with plan {g} (applied {step.applied})",
            Move.UPTODATE: f"finds plan {g} already applied (regional names {step.applied})",
            Move.READ: f"reads {e} to apply plan {g}",
            Move.SKIP: f"skips {e} (plan {g}: {step.reason})",
            Move.REFUSE: f"refuses plan {g} for {e}",
            Move.COMMIT: _flip(e, step),
            Move.LOST: f"loses the lock of {e} (someone committed since its read), reads again",
            Move.REJECTED: f"cannot apply plan {g} to {e}: {step.reason}",
            Move.TREES: "clean-up lists the trees",
            Move.REFS: "clean-up lists what aliases and rollbacks name",
            Move.DELETE: f"clean-up deletes {tree}",
            Move.MISSING: f"clean-up finds {tree} already gone",
            Move.REFERENCED: f"clean-up keeps {tree}: it is named",
            Move.GET: f"reads plan {g}",
        }[step.move]
        lines.append(f"step {number:>3}  {who} {text}")
    return lines


def _flip(endpoint: str, step: ModelStep) -> str:
    rollback = f"; rollback names plan {step.rollback}" if step.rollback else ""
    if step.previous > step.generation:
        return (f"flips {endpoint} back to plan {step.generation}: it named plan "
                f"{step.previous} (a stale plan{rollback})")
    was = f" (was plan {step.previous}{rollback})" if step.previous else ""
    return f"flips {endpoint} to plan {step.generation}{was}"


@dataclass(frozen=True)
class ExplorerStep:
    """One round-trip of one explorer actor: a model step, or the second half of a read of
    the newest plan (``move`` GET)."""

    index: int
    """Of the model step in the trail."""
    step: ModelStep
    move: Move


def explorer_steps(steps: Sequence[ModelStep]) -> list[ExplorerStep]:
    found = []
    for index, step in enumerate(steps):
        found.append(ExplorerStep(index, step, step.move))
        if step.move is Move.NEWEST and step.generation:
            found.append(ExplorerStep(index, step, Move.GET))
    return found


def explorer_choices(steps: Sequence[ModelStep]) -> str:
    """The explorer actors that run the trail's round-trips, in the trail's order, as a choice
    string. The explorer's lock leases and back-off sleeps may make it refuse this exact
    order: :func:`services.modelcheck.translate.translate` fits it to them."""
    return "".join(str(s.step.actor) for s in explorer_steps(steps))


def _objects(step: ExplorerStep, endpoints: int) -> tuple[set[str], set[str]]:
    """What one round-trip reads and what it writes: the plan store, or one endpoint's
    records (its alias, rollback, lock and trees)."""
    model = step.step
    move = step.move
    if move is Move.GET:
        return set(), set()  # an immutable plan body
    if move is Move.PUBLISH:
        return set(), {"plans"}
    if move is Move.NEWEST:
        return {"plans"}, set()
    if move in (Move.CHECK, Move.UPTODATE):
        return {"endpoint 0"}, set()
    if move in (Move.TREES, Move.REFS):
        return {f"endpoint {e}" for e in range(endpoints)}, set()
    assert move in _ENDPOINT_MOVES
    touched = {f"endpoint {model.endpoint}"}
    return (touched, touched) if model.writes else (touched, set())


def predecessors(plan: Sequence[ExplorerStep], endpoints: int) -> list[frozenset[int]]:
    """For each round-trip, the earlier ones it must follow: the same actor's, and any other
    actor's that wrote what it touches or read what it writes. Any order of the round-trips
    that keeps these gives every actor the same reads, hence the same decisions."""
    touched = [_objects(step, endpoints) for step in plan]
    found = []
    for j, step in enumerate(plan):
        reads, writes = touched[j]
        before = set()
        for i in range(j):
            other_reads, other_writes = touched[i]
            if plan[i].step.actor == step.step.actor or writes & (other_reads | other_writes) \
                    or reads & other_writes:
                before.add(i)
        found.append(frozenset(before))
    return found
