"""The enactor process of one AZ: an :class:`~services.enactor.enactor.Enactor`, round after round.

A round starts when the planner publishes (pub/sub) or, failing a notification, after a plan
interval; faults reach the enactor's gate by notification too. Redis errors end a round, are
counted, and the next round retries after a back-off (:data:`ROUND_RETRY`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import Iterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.core import names
from services.core.backoff import RetryBackoff
from services.core.faults import PIDS_KEY
from services.enactor.enactor import Enactor, RoundOutcome, policy_for
from services.enactor.gate import FaultGate
from services.enactor.metrics import AUTOMATION_ON, ROUND_ERRORS, init_metrics
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import (
    ServiceContext,
    observability_app,
    redis_client,
    run_until_stopped,
    start_site,
)
from services.runtime.swallowed import swallowed
from services.store import history
from services.store.automation import AutomationSwitch
from services.store.faults import FaultBook
from services.store.follow import follow
from services.store.plans import PlanStore
from services.store.zone import ZoneStore

log = logging.getLogger(__name__)
PID_ERRORS = swallowed("enactor_register_pid")
ROUND_RETRY = RetryBackoff(base_s=0.1, cap_s=1.0)
"""After a round that Redis failed: 0.1 s doubling to 1 s, full jitter (three enactors)."""

GC_FIRST_THRESHOLD = 10_000
"""Allocations between two young-generation collections in the enactor process (Python's
default is 700). A round allocates some hundred containers per endpoint while the plan's
objects stay alive: with the default the collector ran every few endpoints and traversed the
whole plan every few hundred, 0.3-0.5 s of a 10,000-endpoint round (measured)."""


@contextlib.contextmanager
def collector_tuned() -> Iterator[None]:
    """The enactor process's garbage collector thresholds, restored on exit."""
    before = gc.get_threshold()
    gc.set_threshold(GC_FIRST_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


async def register_pid(client: Redis, az: str) -> None:
    """Tell the control service which process to SIGSTOP for an ``enactor_pause``."""
    try:
        await client.hset(PIDS_KEY, az, os.getpid())
    except RedisError as e:
        PID_ERRORS.inc()
        log.warning("pid not registered: %s", e)


async def _follow_plans(plans: PlanStore, signal: asyncio.Event) -> None:
    """Set ``signal`` whenever the planner publishes, and after every (re)subscription (a plan
    published while nobody listened is waiting)."""

    async def look_again() -> None:
        signal.set()

    async for _ in follow(plans.client, plans.channel, feed="plans", resync=look_again):
        signal.set()


async def serve(ctx: ServiceContext) -> None:
    """The enactor process of one AZ (``ctx.az``)."""
    settings = ctx.settings
    az = ctx.az or names.AZS[0]
    init_metrics(az)
    client = redis_client(settings)
    sink = history.RedisHistory(client, source=f"enactor/{az}", clock=WALL_CLOCK)
    gate = FaultGate(FaultBook(client), az, sink)
    plans = PlanStore(client)
    zone = ZoneStore(client, clock=WALL_CLOCK)
    enactor = Enactor(az, policy_for(settings, az), zone, plans, gate, sink,
                      backoff_base_s=settings.backoff_base_s,
                      backoff_max_s=settings.backoff_max_s, window=settings.enactor_window)
    runner = await start_site(observability_app(ctx), "127.0.0.1",
                              settings.metrics_port("enactor", names.AZS.index(az)))
    signal = asyncio.Event()
    await register_pid(client, az)

    switch = AutomationSwitch(client)

    async def rounds() -> None:
        errors = 0
        was_on = True
        while True:
            signal.clear()
            try:
                on = await switch.enabled()
                if on != was_on:
                    log.warning("automation turned %s by an operator", "on" if on else "off")
                    was_on = on
                AUTOMATION_ON.labels(az).set(1 if on else 0)
                if not on:  # an operator's hands on the zone: apply nothing
                    ctx.ready = True
                    await asyncio.sleep(min(0.2, settings.plan_interval_s))
                    continue
                report = await enactor.run_round()
                ctx.ready = True
                errors = 0
                if report.outcome is RoundOutcome.APPLIED:
                    log.info("plan %d: %d flips, %d deletions, rejected %s", report.generation,
                             report.committed, report.deleted, report.rejected or "none")
            except RedisError as e:
                errors += 1
                ROUND_ERRORS.labels(az).inc()
                delay = ROUND_RETRY.delay(errors)
                log.warning("round failed: %s; next round in %.2f s", e, delay)
                await asyncio.sleep(delay)
                continue
            try:
                await asyncio.wait_for(signal.wait(), timeout=settings.plan_interval_s)
            except TimeoutError:
                continue  # no notification: look again anyway, a plan may be waiting

    try:
        with collector_tuned():
            await run_until_stopped(ctx, rounds(), gate.follow(), _follow_plans(plans, signal))
    finally:
        enactor.stopping.set()
        await runner.cleanup()
        await client.aclose()
