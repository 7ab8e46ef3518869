"""The DWFM host as a process: its operator routes (the procedure of 4:14 AM PDT, and the
placement ec2_api asks for) beside /metrics, and its lifetime under ``dnsrace dwfm --host N``."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from loadgen.resolver import StubResolver
from services.core import events
from services.core.names import AZS
from services.ec2.dwfm import OPERATOR_THROTTLE, DwfmHost
from services.ec2.dynamo import DynamoClient
from services.ec2.work import operator_rate
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import (
    ServiceContext,
    observability_app,
    redis_client,
    run_until_stopped,
    start_site,
)
from services.store.history import RedisHistory

log = logging.getLogger(__name__)


def operator_routes(app: web.Application, dwfm: DwfmHost) -> None:
    """The operators' procedure on this host: ``POST /ec2/throttle`` {"rate": R or null} and
    ``POST /ec2/restart`` (the host forgets its waiting lease work, as a restart does)."""

    async def throttle(request: web.Request) -> web.Response:
        try:
            rate = operator_rate(await request.json())
            dwfm.queue.throttle(rate, dwfm.now())
        except (ValueError, KeyError, TypeError) as e:
            return web.json_response({"error": f"bad throttle: {e}"}, status=400)
        OPERATOR_THROTTLE.set(dwfm.queue.operator_rate_s or 0)
        log.info("%s: operators set the throttle to %s", dwfm.holder, rate)
        await dwfm.record(
            events.OperatorAction(
                action="throttle",
                target=dwfm.holder,
                detail="off" if rate is None else f"{rate:g} items/s",
            )
        )
        return web.json_response({"host": dwfm.holder, "rate": dwfm.queue.operator_rate_s})

    async def restart(_: web.Request) -> web.Response:
        lost, queued = await dwfm.restart()
        log.info(
            "%s: selective restart by the operators; %d items lost, %d queued again",
            dwfm.holder,
            lost,
            queued,
        )
        await dwfm.record(
            events.OperatorAction(
                action="restart",
                target=dwfm.holder,
                detail=f"{lost} items lost, {queued} queued again",
            )
        )
        return web.json_response({"host": dwfm.holder, "lost": lost, "queued": queued})

    async def place(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            az = body.get("az") if isinstance(body, dict) else None
            if az is not None and az not in AZS:
                raise ValueError(f"unknown AZ {az!r}")
        except ValueError as e:
            return web.json_response({"error": f"bad placement: {e}"}, status=400)
        droplet = dwfm.place(az)
        if droplet is None:
            return web.json_response({"host": dwfm.holder, "error": "no_capacity"}, status=409)
        return web.json_response(
            {
                "host": dwfm.holder,
                "droplet": droplet.name,
                "az": droplet.az,
                "instances": dwfm.instances[droplet.name],
            }
        )

    app.router.add_post("/ec2/throttle", throttle)
    app.router.add_post("/ec2/restart", restart)
    app.router.add_post("/ec2/place", place)


async def serve(ctx: ServiceContext, host: int) -> None:
    settings = ctx.settings
    resolver = StubResolver(settings.dns_host, settings.dns_port)
    connector = aiohttp.TCPConnector(limit=64)
    metrics: web.AppRunner | None = None
    redis = redis_client(settings)
    history = RedisHistory(redis, source=f"dwfm_{host}", clock=WALL_CLOCK)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            dwfm = DwfmHost(
                settings, host, DynamoClient(resolver, session, settings.lb_port), history=history
            )
            await dwfm.record(events.DwfmStarted(host=dwfm.holder, droplets=len(dwfm.droplets)))
            app = observability_app(ctx)
            operator_routes(app, dwfm)
            metrics = await start_site(app, "127.0.0.1", settings.metrics_port("dwfm", host - 1))
            log.info(
                "DWFM host %d: %d droplets, %d workers, deadline %.1f s, policy %s",
                host,
                len(dwfm.droplets),
                settings.dwfm_workers,
                settings.dwfm_deadline_s,
                dwfm.queue.policy.value,
            )
            ctx.ready = True
            await run_until_stopped(
                ctx,
                dwfm.run(),
                dwfm.gauges(),
                dwfm.history_writer(),
                *(dwfm.worker() for _ in range(settings.dwfm_workers)),
            )
    finally:
        ctx.ready = False
        await resolver.aclose()
        await redis.aclose()
        if metrics is not None:
            await metrics.cleanup()
