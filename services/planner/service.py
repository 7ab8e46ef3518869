"""The DNS Planner process: :meth:`Planner.tick` every ``plan_interval_s``, on the host's clock.

The loop paces itself with ``time.monotonic``: elapsed time in its own loop, a measurement,
not a decision. The plan's time is the wall clock's reading, passed to ``tick``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from services.core import names
from services.core.balancers import fleet
from services.core.plans import PlanRejected
from services.planner.planner import HighWaterMark, Planner
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


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    client = redis_client(settings)
    planner = Planner(PlanStore(client), HealthStore(client),
                      HighWaterMark(Path(settings.state_dir) / "planner.generation"),
                      history.RedisHistory(client, source="planner", clock=WALL_CLOCK),
                      names.endpoints(settings.cells), fleet(settings))
    zone = ZoneStore(client, clock=WALL_CLOCK)
    runner = await start_site(observability_app(ctx), "127.0.0.1",
                              settings.metrics_port("planner"))

    async def plan_forever() -> None:
        next_at = time.monotonic()
        while True:
            try:
                # Cheap when present; restores SOA and NS if Redis came back empty.
                await ensure_apex(zone, settings.ttl_s, settings.negative_ttl_s)
                plan = await planner.tick(WALL_CLOCK.now_ms())
                generation_var.set(plan.generation)
                PUBLISHED.inc()
                NEWEST_GENERATION.set(plan.generation)
                ctx.ready = True
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
