"""ec2_api over a real socket and a real Redis: what RunInstances answers, and what it records.

The DWFM hosts it asks are stood in for by a small placement server on a real socket (the real
hosts need the whole cluster, which tests/test_cascade.py runs): it places on a fixed list of
droplets, then has no room.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from services.config import Settings
from services.core import launch
from services.ec2.api import Ec2Api, routes
from services.runtime.ports import free_port, metrics_port_base
from services.runtime.service import redis_client
from services.store.launches import read_launches, set_netmgr_backlog
from services.tools import ec2 as ec2_tool


@dataclass
class Placements:
    """A DWFM host's placement route: these droplets, one instance each, then none."""

    room: list[tuple[str, str]] = field(default_factory=list)
    asked: list[object] = field(default_factory=list)

    async def place(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append(body["az"])
        fits = [(d, az) for d, az in self.room if body["az"] in (None, az)]
        if not fits:
            return web.json_response({"error": "no_capacity"}, status=409)
        self.room.remove(fits[0])
        return web.json_response({"droplet": fits[0][0], "az": fits[0][1], "instances": 1})


@dataclass
class Api:
    url: str
    session: aiohttp.ClientSession
    host: Placements
    redis: aioredis.Redis

    async def call(self, path: str, data: bytes) -> tuple[int, object]:
        async with self.session.post(self.url + path, data=data) as r:
            return r.status, await r.json()


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@pytest.fixture
async def api(settings_db: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    settings = settings_db.replace(**getattr(request, "param", {}))
    host = Placements([("d1", "use1-az1"), ("d2", "use1-az2")])
    host_app = web.Application()
    host_app.router.add_post("/ec2/place", host.place)
    host_runner, host_port = await _serve(host_app)
    redis = redis_client(settings, retries=1)
    async with aiohttp.ClientSession() as session:
        ec2 = Ec2Api(settings, session, redis, hosts=[f"http://127.0.0.1:{host_port}/ec2/place"])
        app = web.Application()
        routes(app, ec2)
        runner, port = await _serve(app)
        try:
            yield Api(f"http://127.0.0.1:{port}", session, host, redis)
        finally:
            await runner.cleanup()
            await host_runner.cleanup()
            await redis.aclose()


async def test_a_launch_lands_on_a_droplet_with_room_and_is_recorded(api: Api) -> None:
    status, body = await api.call(
        "/RunInstances", b'{"Placement": {"AvailabilityZone": "use1-az2"}}'
    )
    assert status == 200 and launch.outcome_of(status, body) is launch.LaunchOutcome.OK
    assert isinstance(body, dict)
    (instance,) = body["Instances"]
    assert instance["DropletId"] == "d2" and instance["InstanceId"].startswith("i-")
    ((_, recorded),) = await read_launches(api.redis)
    assert (recorded.instance_id, recorded.az, recorded.droplet) == (
        instance["InstanceId"],
        "use1-az2",
        "d2",
    )
    # No room left in use1-az2: InsufficientInstanceCapacity, and nothing recorded.
    status, body = await api.call(
        "/RunInstances", b'{"Placement": {"AvailabilityZone": "use1-az2"}}'
    )
    assert status == 500
    assert launch.outcome_of(status, body) is launch.LaunchOutcome.INSUFFICIENT_CAPACITY
    assert len(await read_launches(api.redis)) == 1


async def test_garbage_gets_invalid_parameter_and_changes_nothing(api: Api) -> None:
    for garbage in (
        b"not json",
        b"[1, 2]",
        b'{"Placement": {"AvailabilityZone": "mars"}}',
        b"\xff\xfe",
    ):
        status, body = await api.call("/RunInstances", garbage)
        assert status == 400, garbage
        assert isinstance(body, dict) and body["Error"]["Code"] == launch.INVALID_PARAMETER
    assert api.host.asked == [] and await read_launches(api.redis) == []
    status, _ = await api.call("/RunInstances", b"{}")  # still serving
    assert status == 200


@pytest.mark.parametrize(
    "api",
    [{"mode": "safe", "protections": ("queue_throttle",), "ec2_netmgr_backlog_limit": 10}],
    indirect=True,
)
async def test_queue_throttle_refuses_launches_while_network_manager_is_behind(api: Api) -> None:
    await set_netmgr_backlog(api.redis, 11)
    status, body = await api.call("/RunInstances", b"{}")
    assert status == 503
    assert launch.outcome_of(status, body) is launch.LaunchOutcome.REQUEST_LIMIT_EXCEEDED
    assert api.host.asked == []  # refused before any droplet was taken
    await set_netmgr_backlog(api.redis, 10)
    status, _ = await api.call("/RunInstances", b"{}")
    assert status == 200


async def test_legacy_ignores_the_backlog_and_the_operators_can_limit_launches(api: Api) -> None:
    await set_netmgr_backlog(api.redis, 10_000)
    status, _ = await api.call("/RunInstances", b"{}")
    assert status == 200
    status, _ = await api.call("/ec2/throttle", b'{"rate": 0.001}')
    assert status == 200
    status, body = await api.call("/RunInstances", b"{}")
    assert launch.outcome_of(status, body) is launch.LaunchOutcome.REQUEST_LIMIT_EXCEEDED
    status, _ = await api.call("/ec2/throttle", b'{"rate": -1}')
    assert status == 400


async def test_dnsrace_ec2_launches_limits_and_frees_launches_on_the_running_api(
        settings_db: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """The operators' launch throttle through the CLI, against ec2_api on its own port."""
    settings = settings_db.replace(metrics_port_base=metrics_port_base())
    host = Placements([("d1", "use1-az1"), ("d2", "use1-az2"), ("d3", "use1-az4")])
    host_app = web.Application()
    host_app.router.add_post("/ec2/place", host.place)
    host_runner, host_port = await _serve(host_app)
    redis = redis_client(settings, retries=1)
    async with aiohttp.ClientSession() as session:
        app = web.Application()
        routes(app, Ec2Api(settings, session, redis,
                           hosts=[f"http://127.0.0.1:{host_port}/ec2/place"]))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.metrics_port("ec2_api")).start()
        api = Api(f"http://127.0.0.1:{settings.metrics_port('ec2_api')}", session, host, redis)
        try:
            args = argparse.Namespace(rate="0.001")
            assert await asyncio.to_thread(ec2_tool.launches_command, args, settings) == 0
            assert "launches limited to 0.001/s" in capsys.readouterr().out
            status, body = await api.call("/RunInstances", b"{}")
            assert launch.outcome_of(status, body) is launch.LaunchOutcome.REQUEST_LIMIT_EXCEEDED
            args = argparse.Namespace(rate="off")
            assert await asyncio.to_thread(ec2_tool.launches_command, args, settings) == 0
            assert "not limited" in capsys.readouterr().out
            status, body = await api.call("/RunInstances", b"{}")
            assert launch.outcome_of(status, body) is launch.LaunchOutcome.OK
        finally:
            await runner.cleanup()
            await host_runner.cleanup()
            await redis.aclose()
