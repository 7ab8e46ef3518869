"""The DNS Planner's decision, one tick at a time: health in, the next plan published.

:meth:`Planner.tick` is given the time; the planner service calls it every ``plan_interval_s``
with the host's clock, and the interleaving explorer calls the very same method with its
logical clock, through its gated stores.

The generation never goes backwards: the next one is above both the newest in Redis and a
local high-water mark written (and fsynced) before each publish, so neither a planner restart
nor a Redis restart that lost data can make it reuse a number.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

from services.core import events
from services.core.balancers import LoadBalancer
from services.core.plans import Plan, make_plan
from services.store.health import HealthStore
from services.store.plans import PlanStore

log = logging.getLogger(__name__)


class GenerationMark(Protocol):
    """The last generation this planner used, kept where a restart finds it."""

    def read(self) -> int: ...

    def write(self, generation: int) -> None:
        """Keep ``generation``; returns once it would survive a crash."""
        ...


class HighWaterMark:
    """The last generation this planner used, kept in a local file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            log.error("ignoring unreadable high-water mark in %s", self.path)
            return 0

    def write(self, generation: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(str(generation))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Planner:
    """Reads load-balancer health, makes the next plan and publishes it."""

    def __init__(self, plans: PlanStore, health: HealthStore, mark: GenerationMark,
                 sink: events.HistorySink, endpoints: tuple[str, ...],
                 lbs: tuple[LoadBalancer, ...]) -> None:
        self.plans = plans
        self.health = health
        self.mark = mark
        self.sink = sink
        self.endpoints = endpoints
        self.lbs = lbs

    async def next_generation(self) -> int:
        """One above both the newest plan in Redis and the high-water mark."""
        return max(await self.plans.newest_generation(), self.mark.read()) + 1

    async def tick(self, now_ms: int) -> Plan:
        """Publish the next plan, made at ``now_ms``; returns it.

        Raises :class:`~services.core.plans.PlanRejected` when the store already holds a
        generation as new (another planner got there first), RedisError when Redis is away.
        The mark is written before the publish: a generation may be skipped, never reused.
        """
        health = await self.health.all()
        generation = await self.next_generation()
        plan = make_plan(generation, now_ms, self.endpoints, self.lbs, health)
        self.mark.write(generation)
        await self.plans.publish(plan)
        await self.sink.record(events.PlanPublished(generation=generation))
        log.debug("published plan %d", generation)
        return plan
