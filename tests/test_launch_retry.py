"""The launch load as an auto-scaling group: failed launches stay pending and come back.

A stand-in for ec2_api on a real loopback port refuses every launch with
``InsufficientInstanceCapacity`` until capacity "returns", then places them. With
``ec2_launch_retry_rate`` the refused launches are retried until placed, so after the outage
ec2_api sees more launches than the steady rate (the surge ``dnsrace outage`` needs); without
it, they are lost.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiohttp import web

from loadgen.launches import run_launches
from services.config import Settings
from services.core.launch import (
    INSUFFICIENT_CAPACITY,
    RUN_INSTANCES_PATH,
    LaunchOutcome,
    error_body,
)
from services.runtime.ports import free_port

OUTAGE_S = 1.0
RUN_S = 2.5


async def launches_with(retry_rate: float) -> tuple[Counter[LaunchOutcome], int]:
    """(what the load counted, launches placed after the outage) against the stand-in."""
    started = time.monotonic()
    placed_after = 0

    async def run_instances(request: web.Request) -> web.Response:
        nonlocal placed_after
        await request.read()
        if time.monotonic() - started < OUTAGE_S:
            return web.json_response(error_body(INSUFFICIENT_CAPACITY, "no leased droplet"),
                                     status=500)
        placed_after += 1
        return web.json_response({"Instances": [{"InstanceId": f"i-{placed_after}"}]})

    app = web.Application()
    app.router.add_post(RUN_INSTANCES_PATH, run_instances)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settings = Settings(metrics_port_base=port - 16, ec2_launch_rate=10.0,
                        ec2_launch_retry_rate=retry_rate)
    assert settings.metrics_port("ec2_api") == port
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(run_launches(settings, stop))
        await asyncio.sleep(RUN_S)
        stop.set()
        counts = await task
    finally:
        await runner.cleanup()
    return counts, placed_after


async def test_refused_launches_come_back_as_a_surge_when_retried() -> None:
    counts, placed = await launches_with(retry_rate=40.0)
    assert counts[LaunchOutcome.INSUFFICIENT_CAPACITY] >= 10  # every attempt in the outage
    asked = 10.0 * RUN_S
    steady_after = 10.0 * (RUN_S - OUTAGE_S)
    # The group got (nearly) all it asked for: the outage's launches placed after it, on top
    # of the steady ones.
    assert placed >= asked - 3 > steady_after + 5


async def test_without_retries_refused_launches_are_lost() -> None:
    counts, placed = await launches_with(retry_rate=0.0)
    assert counts[LaunchOutcome.INSUFFICIENT_CAPACITY] >= 5
    assert placed <= 10.0 * (RUN_S - OUTAGE_S) + 2
