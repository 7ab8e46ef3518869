"""The DNS Planner: every ``plan_interval_s`` a new plan from load-balancer health.

The generation never goes backwards: the next one is above both the newest in Redis and a
local high-water mark written (and fsynced) before each publish, so neither a planner restart
nor a Redis restart that lost data can make it reuse a number.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from services.core import events, names
from services.core.balancers import fleet
from services.core.plans import PlanRejected, make_plan
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import (
    ServiceContext,
    generation_var,
    observability_app,
    redis_client,
    run_until_stopped,
    start_site,
)
from services.store import history
from services.store.health import HealthStore
from services.store.plans import PlanStore
from services.store.zone import ZoneStore, ensure_apex

log = logging.getLogger(__name__)

NEWEST_GENERATION = Gauge("dnsrace_planner_newest_generation", "Generation of the newest plan")
PUBLISHED = Counter("dnsrace_planner_plans_published_total", "Plans the planner published")
ERRORS = Counter("dnsrace_planner_errors_total", "Plans not published, by reason", ["reason"])
for _reason in ("not_newer", "redis"):
    ERRORS.labels(_reason)


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


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    client = redis_client(settings)
    plans = PlanStore(client)
    health = HealthStore(client)
    sink = history.RedisHistory(client, source="planner", clock=WALL_CLOCK)
    mark = HighWaterMark(Path(settings.state_dir) / "planner.generation")
    lbs = fleet(settings)
    endpoints = names.endpoints(settings.cells)
    runner = await start_site(observability_app(ctx), "127.0.0.1",
                              settings.metrics_port("planner"))

    async def plan_forever() -> None:
        zone = ZoneStore(client, clock=WALL_CLOCK)
        next_at = time.monotonic()
        while True:
            try:
                # Cheap when present; restores SOA and NS if Redis came back empty.
                await ensure_apex(zone, settings.ttl_s, settings.negative_ttl_s)
                generation = max(await plans.newest_generation(), mark.read()) + 1
                generation_var.set(generation)
                plan = make_plan(generation, WALL_CLOCK.now_ms(), endpoints, lbs,
                                 await health.all())
                mark.write(generation)
                await plans.publish(plan)
                PUBLISHED.inc()
                NEWEST_GENERATION.set(generation)
                ctx.ready = True
                await sink.record(events.PlanPublished(generation=generation))
                log.debug("published plan %d", generation)
            except PlanRejected as e:
                ERRORS.labels("not_newer").inc()
                log.warning("%s", e)
            except RedisError as e:
                ERRORS.labels("redis").inc()
                log.warning("plan not published: %s", e)
            next_at += settings.plan_interval_s
            next_at = max(next_at, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    try:
        await run_until_stopped(ctx, plan_forever())
    finally:
        await runner.cleanup()
        await client.aclose()
