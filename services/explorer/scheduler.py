"""A deterministic scheduler: exactly one actor runs between two gates, chosen by a Chooser.

Every actor is an asyncio coroutine that calls :meth:`Scheduler.turn` before each store
round-trip. The scheduler waits until every live actor is parked at a gate (or finished),
asks the chooser which one goes next, and lets exactly that one run to its next gate. Given
the same sequence of choices, the same steps run in the same order: that is what makes a
schedule replayable and lets a search enumerate schedules.

Time is logical: every step advances the clock by ``step_ms``; an actor that sleeps is not
eligible until the clock reaches its wake time, and when every eligible actor is asleep the
clock jumps to the earliest wake time (sleeping costs no real time).

An enactor that has finished a round waits for the planner's next publication, as the real
one waits for the plan notification; once the planner is done and nothing new was published
it is retired. So is any actor past ``max_steps``, which bounds every schedule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.errors import DnsraceError

PLANNER = 0


class Retired(BaseException):
    """Raised inside an actor at its gate when the scheduler ends it.

    A BaseException, like ``asyncio.CancelledError``, so that no ``except Exception`` in the
    code under exploration can swallow it.
    """


class ReplayDiverged(DnsraceError):
    """A recorded choice names an actor that cannot run at that step."""


class Chooser(Protocol):
    def choose(self, step: int, enabled: Sequence[int], current: int | None) -> int:
        """The actor (index) to run next among ``enabled`` (sorted, never empty)."""
        ...


@dataclass
class ActorState:
    index: int
    name: str
    gate: asyncio.Future[None] | None = None
    """Set while the actor is parked at a gate, waiting to be chosen."""
    done: bool = False
    wake_ms: int = 0
    idle_after: int | None = None
    """Not eligible until more than this many plans were published (None: eligible)."""
    seen: int = 0
    """Plans published when this actor last read the newest plan."""
    steps: int = 0
    bounded: bool = False


@dataclass
class Scheduler:
    actor_names: tuple[str, ...]
    epoch_ms: int
    step_ms: int = 100
    max_steps: int = 200
    now_ms: int = 0
    published: int = 0
    choices: list[int] = field(default_factory=list)
    halted: bool = False
    """Set when a violation is found: every actor is retired at its next gate."""

    def __post_init__(self) -> None:
        self.now_ms = self.epoch_ms
        self.actors = [ActorState(i, name) for i, name in enumerate(self.actor_names)]
        self._running = 0
        self._quiet: asyncio.Future[None] | None = None

    # -- what actors call -------------------------------------------------------------

    def clock(self) -> float:
        """The logical clock, in seconds, as ``Enactor(clock=...)`` wants it."""
        return self.now_ms / 1000

    def sleeper(self, index: int) -> Callable[[float], Awaitable[None]]:
        """An injectable ``sleep``: sets a wake time and yields nothing real."""
        actor = self.actors[index]

        async def sleep(delay_s: float) -> None:
            actor.wake_ms = max(actor.wake_ms, self.now_ms + int(delay_s * 1000))

        return sleep

    async def turn(self, index: int) -> None:
        """Park at a gate until chosen (raises Retired if the scheduler ends this actor)."""
        actor = self.actors[index]
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        actor.gate = gate
        self._settle()
        await gate

    def idle_until_publication(self, index: int) -> None:
        """The actor's next gate waits for a plan newer than the last one it read."""
        actor = self.actors[index]
        actor.idle_after = actor.seen

    def saw_plans(self, index: int) -> None:
        self.actors[index].seen = self.published

    # -- running a schedule -----------------------------------------------------------

    @property
    def step(self) -> int:
        return len(self.choices)

    async def run(self, bodies: Sequence[Coroutine[Any, Any, None]], chooser: Chooser) -> None:
        """Run one schedule to its end: every actor finished, retired or halted."""
        loop = asyncio.get_running_loop()
        self._running = len(bodies)
        self._quiet = loop.create_future()
        tasks = [loop.create_task(self._body(i, body)) for i, body in enumerate(bodies)]
        current: int | None = None
        try:
            while True:
                await self._quiet
                self._quiet = loop.create_future()
                if all(a.done for a in self.actors):
                    break
                if self.halted:
                    self._retire([a for a in self.actors if a.gate is not None])
                    continue
                enabled = self._enabled()
                if enabled is None:
                    continue  # someone was retired: wait for it to finish
                choice = chooser.choose(self.step, enabled, current)
                if choice not in enabled:
                    raise ReplayDiverged(
                        f"step {self.step}: actor {choice} cannot run (can: {enabled})")
                current = choice
                self._grant(choice)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            error = task.exception()
            if error is not None:
                raise error

    async def _body(self, index: int, body: Coroutine[Any, Any, None]) -> None:
        try:
            await body
        except Retired:
            pass  # the scheduler ended this actor: the normal way to stop
        except BaseException:
            self.halted = True  # an actor failed: end the schedule, run() re-raises the error
            raise
        finally:
            self.actors[index].done = True
            self.actors[index].gate = None
            self._settle()

    def _settle(self) -> None:
        """One actor stopped running (parked or finished); wake the loop once all have."""
        self._running -= 1
        if self._running == 0 and self._quiet is not None and not self._quiet.done():
            self._quiet.set_result(None)

    def _grant(self, index: int) -> None:
        actor = self.actors[index]
        assert actor.gate is not None
        gate, actor.gate = actor.gate, None
        self.choices.append(index)
        self.now_ms += self.step_ms
        actor.steps += 1
        actor.idle_after = None
        self._running += 1
        gate.set_result(None)

    def _retire(self, actors: list[ActorState]) -> None:
        for actor in actors:
            assert actor.gate is not None
            gate, actor.gate = actor.gate, None
            self._running += 1
            gate.set_exception(Retired())

    def _enabled(self) -> list[int] | None:
        """Actors that may run now, or None after retiring some (the caller waits again)."""
        parked = [a for a in self.actors if a.gate is not None]
        planner_done = self.actors[PLANNER].done
        retire = []
        for actor in parked:
            if actor.steps >= self.max_steps:
                actor.bounded = True
                retire.append(actor)
            elif self._waiting(actor) and planner_done:
                retire.append(actor)
        if retire:
            self._retire(retire)
            return None
        ready = [a for a in parked if not self._waiting(a)]
        assert ready, "no actor can run: the planner is parked, so this cannot happen"
        if all(a.wake_ms > self.now_ms for a in ready):
            self.now_ms = min(a.wake_ms for a in ready)
        return [a.index for a in ready if a.wake_ms <= self.now_ms]

    def _waiting(self, actor: ActorState) -> bool:
        return actor.idle_after is not None and self.published <= actor.idle_after
