"""One schedule of the real planner and the real enactors, on a real Redis, step by step.

:class:`Lab` owns one Redis client and one key prefix for a whole run. Each actor talks to
the zone and the plan store through a gated subclass of the real :class:`ZoneStore` and
:class:`PlanStore`: every round-trip first waits for the scheduler's turn, then runs the very
same Lua scripts as production. Between schedules the prefix's keys are deleted in one
command, so a schedule costs its round-trips and nothing else.

The Lab is the stores' clock: each batch carries the logical ``now_ms``, so a fenced lease is
judged by change_batch.lua's own rule, in logical time, exactly as production judges it.

The enactors walk in windows of ``ExploreConfig.window`` endpoints, the cluster's by default,
with the cluster's walk (:class:`~services.enactor.walk.Walk`); one turn is one atomic step of
Redis: a window's read (one script), or one batch of a window's pipeline (other clients may run
between two of them; in Redis only between two slices of ``BATCHES_PER_CALL`` batches, so the
explorer's interleavings include every one Redis can make). The one thing the explorer does
differently is the enactor's overlap: the cluster reads the next window while the last one's
batches commit; here each round-trip ends before the next starts (an actor waits at one gate at
a time), so the read comes after those batches. Nothing is lost by that: the read and the
batches are of different endpoints, and no single step of another actor both writes what the
read reads and touches what a batch writes (batches and clean-up deletions are each of one
endpoint; reads write nothing), so every interleaving of the overlapped walk has an equivalent
one here. Only the logical time of the read differs, by the batches' steps (a lock lease starts
later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from services.config import DNS_PROTECTIONS, Mode, Protection, Settings
from services.core import events, names
from services.core.balancers import fleet
from services.core.invariants import (
    ALL_INVARIANTS,
    Invariant,
    Violation,
    ZoneWatch,
    referrers,
)
from services.core.records import (
    Committed,
    ZoneSnapshot,
)
from services.enactor.enactor import Enactor, policy_for
from services.enactor.gate import FaultGate
from services.explorer.gated import GatedPlans, GatedZone, MemoryMark, PlannerPlans, Recorder
from services.explorer.scheduler import Chooser, Scheduler
from services.planner.planner import Planner
from services.store.health import HealthStore
from services.store.zone import ZoneKeys

PLANNER_NAME = "planner"
ACTORS: tuple[str, ...] = (PLANNER_NAME, *names.AZS)
CLUSTER_WINDOW = Settings().enactor_window
"""The window the cluster's enactors walk in (``DNSRACE_ENACTOR_WINDOW``'s default)."""
EPOCH_MS = 1_760_942_880_000
"""The logical clock starts at 2025-10-20 06:48 UTC (11:48 PM PDT, when the name went empty);
the traces count from it."""


@dataclass(frozen=True)
class ExploreConfig:
    """What is explored: the algorithm, the size of the world and what counts as a failure."""

    mode: Mode = "legacy"
    protections: tuple[Protection, ...] = ()
    """In safe mode, the protections on (empty: all of them); ignored in legacy mode."""
    plans: int = 4
    endpoints: int = 2
    cleanup_age: int = 2
    invariants: tuple[Invariant, ...] = ALL_INVARIANTS
    """A schedule stops at its first violation of one of these."""
    step_ms: int = 100
    """Logical time one step takes (a lock lease of 1 s lasts 10 steps)."""
    max_steps: int = 200
    """Steps one actor may take in a schedule; past it the actor is retired."""
    window: int = CLUSTER_WINDOW
    """Endpoints an enactor reads, then commits, per window (1: one at a time)."""

    def __post_init__(self) -> None:
        if self.mode not in ("legacy", "safe"):
            raise ValueError(f"mode {self.mode!r}: choose legacy or safe")
        unknown = [p for p in self.protections if p not in DNS_PROTECTIONS]
        if unknown:
            raise ValueError(f"unknown protection {', '.join(unknown)}; choose from "
                             f"{', '.join(DNS_PROTECTIONS)}")
        if not self.invariants:
            raise ValueError("check at least one invariant")
        if min(self.plans, self.endpoints, self.step_ms, self.max_steps, self.window) < 1:
            raise ValueError("plans, endpoints, step_ms, max_steps and window must be >= 1")
        self.settings()  # validates cleanup_age (ConfigError is a ValueError)

    def settings(self) -> Settings:
        return Settings(mode=self.mode, protections=self.protections,
                        cleanup_age=self.cleanup_age, enactor_window=self.window)

    @property
    def active_protections(self) -> tuple[Protection, ...]:
        on = self.settings().active_protections
        return tuple(p for p in DNS_PROTECTIONS if p in on)

    def endpoint_names(self) -> tuple[str, ...]:
        return names.endpoints(max(0, self.endpoints - len(names.NAMED_ENDPOINTS)))[
            :self.endpoints]

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "protections": list(self.active_protections),
                "plans": self.plans, "endpoints": self.endpoints,
                "cleanup_age": self.cleanup_age,
                "invariants": [str(i) for i in self.invariants],
                "step_ms": self.step_ms, "max_steps": self.max_steps, "window": self.window}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExploreConfig:
        """A saved configuration; one saved before windows were explored has window 1."""
        mode = data.get("mode", "legacy")
        protections = tuple(data.get("protections", ())) if mode == "safe" else ()
        return cls(mode=mode, protections=protections, plans=int(data.get("plans", 4)),
                   endpoints=int(data.get("endpoints", 2)),
                   cleanup_age=int(data.get("cleanup_age", 2)),
                   invariants=tuple(Invariant(i) for i in data.get("invariants",
                                                                   ALL_INVARIANTS)),
                   step_ms=int(data.get("step_ms", 100)),
                   max_steps=int(data.get("max_steps", 200)),
                   window=int(data.get("window", 1)))


@dataclass(frozen=True)
class Happening:
    """An event an actor recorded, stamped with the step and logical time it happened at."""

    step: int
    at_ms: int
    """Logical milliseconds since the schedule started."""
    actor: str
    event: events.Event


@dataclass
class ScheduleRecord:
    choices: tuple[int, ...]
    happenings: list[Happening]
    violations: list[Violation]
    """Of the step the schedule stopped at; empty when it ran to its end."""
    bounded: bool
    """Some actor was stopped by the step bound rather than by running out of work."""
    end_ms: int
    named_by: dict[str, str] = field(default_factory=dict)
    """Trees deleted while named, and who named them (``the rollback of E``)."""

    @property
    def steps(self) -> int:
        return len(self.choices)


@dataclass
class Lab:
    """A run's Redis side: one client, one key prefix, the gated stores of every actor."""

    client: aioredis.Redis
    prefix: str
    config: ExploreConfig
    scheduler: Scheduler = field(init=False)
    _happenings: list[Happening] = field(init=False, default_factory=list)
    _violations: list[Violation] = field(init=False, default_factory=list)
    _named_by: dict[str, str] = field(init=False, default_factory=dict)
    _committed_at: dict[int, tuple[int, int]] = field(init=False, default_factory=dict)
    """Zone serial -> (step, logical time) of the commit: a window's flips are recorded
    together after its last batch, each is told at the step it committed."""

    def __post_init__(self) -> None:
        self.keys = ZoneKeys(self.prefix)
        self.endpoints = self.config.endpoint_names()
        self.settings = self.config.settings()
        self.lbs = fleet(self.settings)
        self.zones = [GatedZone(self, i) for i in range(len(ACTORS))]
        self.plans = [PlannerPlans(self, 0), *(GatedPlans(self, i) for i in range(1, len(ACTORS)))]
        # Nobody changes load-balancer health here: the planner reads it ungated.
        self.health = HealthStore(self.client, self.prefix)
        store = self.plans[0]
        generations = range(1, self.config.plans + 1)
        self._keys = [*self.keys.stored, store.newest_key, store.index_key,
                      *(self.keys.trees_of(g) for g in generations),
                      *(f"{store.plan_prefix}{g}" for g in generations)]
        self.watch = ZoneWatch(self.endpoints, frozenset(self.config.invariants))

    async def reset(self) -> None:
        """Forget the previous schedule: delete every key of this prefix (one command)."""
        await self.client.delete(*self._keys)

    # -- called by the gated stores and sinks ------------------------------------------

    async def turn(self, actor: int) -> None:
        await self.scheduler.turn(actor)

    def now_ms(self) -> int:
        """The logical clock (the stores' and the sinks' :class:`~services.core.clock.Clock`)."""
        return self.scheduler.now_ms

    def record(self, actor: int, event: events.Event) -> None:
        sched = self.scheduler
        step, now_ms = sched.step, sched.now_ms
        if isinstance(event, events.BatchCommitted | events.TreeDeleted):
            if event.serial not in self._committed_at and sched.halted:
                return  # committed after the violation (the rest of a pipeline)
            step, now_ms = self._committed_at.get(event.serial, (step, now_ms))
        self._happenings.append(Happening(step, now_ms - sched.epoch_ms, ACTORS[actor],
                                          event.stamped(self)))

    async def after_commit(self, committed: Committed) -> None:
        """Judge I1-I3 on the zone as this batch left it; halt the schedule on a violation."""
        self._committed_at[committed.serial] = (self.scheduler.step, self.scheduler.now_ms)
        # One HGETALL is atomic, and nobody else runs now: the zone exactly as this batch left
        # it (ZoneStore.snapshot() would add MULTI/EXEC and the serial, which I1-I3 ignore).
        snapshot = ZoneSnapshot(0, await self.client.hgetall(self.keys.rrsets))
        for tree in committed.live_deleted:
            self._named_by[tree] = " and ".join(referrers(snapshot, self.endpoints, tree))
        violations = self.watch.observe(snapshot, committed.live_deleted)
        if violations:
            self._violations = violations
            self.scheduler.halted = True

    # -- one schedule -----------------------------------------------------------------

    async def run(self, chooser: Chooser) -> ScheduleRecord:
        """Play one schedule from an empty zone and plan store, choosing with ``chooser``."""
        await self.reset()
        self.scheduler = Scheduler(ACTORS, EPOCH_MS, self.config.step_ms, self.config.max_steps)
        self._happenings = []
        self._violations = []
        self._named_by = {}
        self._committed_at = {}
        self.watch = ZoneWatch(self.endpoints, frozenset(self.config.invariants))
        bodies = [self._planner()]
        for index, az in enumerate(names.AZS, start=1):
            bodies.append(self._enactor(index, az))
        await self.scheduler.run(bodies, chooser)
        sched = self.scheduler
        return ScheduleRecord(tuple(sched.choices), self._happenings, self._violations,
                              any(a.bounded for a in sched.actors), sched.now_ms - sched.epoch_ms,
                              self._named_by)

    async def _planner(self) -> None:
        """The real planner's ticks, at logical time, from a fresh high-water mark."""
        planner = Planner(self.plans[0], self.health, MemoryMark(), Recorder(self, 0),
                          self.endpoints, self.lbs)
        for _ in range(self.config.plans):
            await planner.tick(self.now_ms())

    async def _enactor(self, index: int, az: str) -> None:
        sink = Recorder(self, index)
        enactor = Enactor(az, policy_for(self.settings, az), self.zones[index],
                          self.plans[index], FaultGate(None, az, sink), sink,
                          backoff_base_s=self.settings.backoff_base_s,
                          backoff_max_s=self.settings.backoff_max_s,
                          window=self.settings.enactor_window, overlap=False,
                          clock=self.scheduler.clock, sleep=self.scheduler.sleeper(index))
        while True:
            await enactor.run_round()
            # Like serve(): wait for the plan notification unless one came during the round.
            self.scheduler.idle_until_publication(index)

