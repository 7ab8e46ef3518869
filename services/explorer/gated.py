"""The stores as the explorer's actors see them: the production zone and plan stores, where
every round-trip to Redis first waits for the actor's turn, and each commit is judged."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import redis.asyncio as aioredis

from services.core import events
from services.core.plans import Plan
from services.core.records import (
    ChangeBatch,
    Committed,
    EndpointRecords,
    OldTrees,
    Rejected,
    ZoneSnapshot,
)
from services.explorer.scheduler import Scheduler
from services.store.plans import PlanStore
from services.store.zone import ZoneKeys, ZoneStore


class Lab(Protocol):
    """What the gated stores need of the schedule they run in (:class:`~.world.Lab` is it)."""

    client: aioredis.Redis
    keys: ZoneKeys
    prefix: str
    scheduler: Scheduler

    def now_ms(self) -> int: ...
    async def turn(self, actor: int) -> None: ...
    def record(self, actor: int, event: events.Event) -> None: ...
    async def after_commit(self, committed: Committed) -> None: ...


@dataclass(frozen=True, kw_only=True)
class NewestRead(events.Event):
    """The explorer's note that an actor read the newest plan's generation (a round starts).

    The enactor checks that plan against the zone one round-trip later, and acts on it long
    after: this is where a stale check begins.
    """

    kind: ClassVar[str] = "newest_read"
    generation: int


class Recorder:
    """The history sink of one actor: events go to the schedule's record, in step order."""

    def __init__(self, lab: Lab, actor: int) -> None:
        self._lab = lab
        self._actor = actor

    async def record(self, event: events.Event) -> None:
        self._lab.record(self._actor, event)

    async def record_many(self, events: Sequence[events.Event]) -> None:
        for event in events:
            self._lab.record(self._actor, event)


class GatedZone(ZoneStore):
    """The real zone store; each round-trip first waits for this actor's turn."""

    def __init__(self, lab: Lab, actor: int) -> None:
        super().__init__(lab.client, lab.keys, clock=lab)
        self._lab = lab
        self._actor = actor

    async def apply(self, batch: ChangeBatch) -> Committed:
        await self._lab.turn(self._actor)
        committed = await super().apply(batch)
        await self._lab.after_commit(committed)
        return committed

    async def apply_many(self, batches: Sequence[ChangeBatch]
                         ) -> list[Committed | Rejected]:
        """One turn per batch: they commit in order, each judged alone, and other clients'
        commands may run between two of them (a pipeline, not a transaction).

        Once a violation has ended the schedule, the rest of the pipeline (on the wire
        already) runs without turns and unjudged, so that the enactor records what it did up
        to the violation; the story leaves out what came after.
        """
        outcomes: list[Committed | Rejected] = []
        for batch in batches:
            judged = not self._lab.scheduler.halted
            if judged:
                await self._lab.turn(self._actor)
            try:
                committed = await super().apply(batch)
            except Rejected as e:
                outcomes.append(e)
                continue
            if judged:
                await self._lab.after_commit(committed)
            outcomes.append(committed)
        return outcomes

    async def read_endpoint(self, endpoint: str, tree: str) -> EndpointRecords:
        await self._lab.turn(self._actor)
        return await super().read_endpoint(endpoint, tree)

    async def read_endpoints(self, requests: Sequence[tuple[str, str]]
                             ) -> list[EndpointRecords]:
        await self._lab.turn(self._actor)
        return await super().read_endpoints(requests)

    async def old_trees(self, below: int, newest: int) -> OldTrees:
        await self._lab.turn(self._actor)
        return await super().old_trees(below, newest)

    async def references(self, of: Collection[str] | None = None) -> dict[str, int]:
        await self._lab.turn(self._actor)
        return await super().references(of)

    async def snapshot(self) -> ZoneSnapshot:
        await self._lab.turn(self._actor)
        return await super().snapshot()

    async def serial(self) -> int:
        await self._lab.turn(self._actor)
        return await super().serial()

    async def get_many(self, keys: list[str]) -> dict[str, str | None]:
        await self._lab.turn(self._actor)
        return await super().get_many(keys)


class GatedPlans(PlanStore):
    """The real plan store; each round-trip first waits for this actor's turn.

    ``newest()`` is inherited: it is two round-trips (the generation, then the plan), and
    another actor may run between them, exactly as in production.
    """

    def __init__(self, lab: Lab, actor: int) -> None:
        super().__init__(lab.client, lab.prefix)
        self._lab = lab
        self._actor = actor

    async def publish(self, plan: Plan) -> None:
        await self._lab.turn(self._actor)
        await super().publish(plan)
        self._lab.scheduler.published += 1

    async def newest_generation(self) -> int:
        await self._lab.turn(self._actor)
        self._lab.scheduler.saw_plans(self._actor)
        generation = await super().newest_generation()
        self._lab.record(self._actor, NewestRead(generation=generation))
        return generation

    async def get(self, generation: int) -> Plan | None:
        await self._lab.turn(self._actor)
        return await super().get(generation)


class PlannerPlans(GatedPlans):
    """The planner's plan store: its publish waits for a turn, its read of the newest
    generation does not. Only the planner writes plans, so no other actor's step can change
    what that read returns; a gate there would only multiply schedules that end the same."""

    async def newest_generation(self) -> int:
        return await PlanStore.newest_generation(self)


@dataclass
class MemoryMark:
    """The planner's high-water mark, kept for one schedule (production's is a file)."""

    generation: int = 0

    def read(self) -> int:
        return self.generation

    def write(self, generation: int) -> None:
        self.generation = generation
