"""The planner's tick on a real Redis: the next plan from health, at the time it is given, and a
generation that never goes backwards, across a planner restart and a Redis that lost its data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.core import events, names
from services.core.balancers import Health, LoadBalancer
from services.core.plans import make_plan
from services.planner.planner import HighWaterMark, Planner
from services.store.health import HealthStore
from services.store.plans import PlanStore
from tests.conftest import ManualClock

LBS = tuple(LoadBalancer(f"lb-{i}", names.AZS[i % 3], f"127.0.10.{i + 1}", 100)
            for i in range(6))
ENDPOINTS = names.endpoints(1)


class Site:
    """What survives a planner restart: Redis (under a prefix) and the planner's state file."""

    def __init__(self, client: aioredis.Redis, prefix: str, state: Path) -> None:
        self.client = client
        self.plans = PlanStore(client, prefix)
        self.health = HealthStore(client, prefix)
        self.mark_path = state / "planner.generation"
        self.clock = ManualClock(1_000_000)
        self.history = events.MemoryHistory(self.clock)

    def planner(self) -> Planner:
        """A planner process as it starts: nothing in memory but what it reads."""
        return Planner(self.plans, self.health, HighWaterMark(self.mark_path), self.history,
                       ENDPOINTS, LBS)

    async def redis_lost_its_plans(self) -> None:
        await self.client.delete(self.plans.newest_key, self.plans.index_key,
                                 *await self.client.keys(f"{self.plans.plan_prefix}*"))


@pytest.fixture
def site(redis_client: aioredis.Redis, prefix: str, tmp_path: Path) -> Site:
    return Site(redis_client, prefix, tmp_path)


async def test_a_tick_publishes_the_plan_of_current_health_made_at_the_given_time(
        site: Site) -> None:
    await site.health.set(LBS[0].ip, Health(False, 0))
    plan = await site.planner().tick(now_ms=1_234_000)
    assert (plan.generation, plan.created_ms) == (1, 1_234_000)
    assert await site.plans.newest() == plan
    assert plan == make_plan(1, 1_234_000, ENDPOINTS, LBS, {LBS[0].ip: Health(False, 0)})
    assert all(a.ip != LBS[0].ip for a in plan.endpoints[names.REGIONAL])
    published = [e for e in site.history.events if isinstance(e, events.PlanPublished)]
    assert [(e.generation, e.at_ms) for e in published] == [(1, site.clock.now)]


async def test_the_generation_never_goes_backwards_across_restarts(site: Site) -> None:
    first = site.planner()
    assert [(await first.tick(t)).generation for t in (1, 2, 3)] == [1, 2, 3]
    # The planner restarts, and Redis restarts without its plans: the mark carries on.
    await site.redis_lost_its_plans()
    assert (await site.planner().tick(4)).generation == 4
    # The planner restarts without its state file: Redis carries on.
    site.mark_path.unlink()
    restarted = site.planner()
    assert (await restarted.tick(5)).generation == 5
    assert HighWaterMark(site.mark_path).read() == 5
    assert (await site.plans.newest_generation()) == 5

