"""The NLB over real sockets and a real Redis: in legacy a launched instance is in service before
its network state propagated (C2 breaks), failing checks take every AZ out of the name (C3
breaks), and once propagated the AZ comes back and the node forwards calls to the instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from services.config import Settings
from services.core.addresses import node_address
from services.core.cascade_invariants import check_connectivity, check_velocity
from services.core.events import InstanceLaunched, NetworkPropagated, OperatorAction
from services.ec2.instances import AzInstances
from services.ec2.netmgr import PROPAGATED_KEY
from services.nlb.service import Nlb, routes
from services.runtime.clock import WALL_CLOCK
from services.runtime.ports import free_port
from services.runtime.service import start_site
from services.store import history
from services.store.launches import Launch, append_launch
from services.store.zone import ZoneKeys, ZoneStore


async def _until(condition: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await condition():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        await asyncio.sleep(0.05)


async def test_legacy_nlb_serves_without_connectivity_and_fails_every_az_away(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    port, node_port = free_port(), free_port()
    sink = history.RedisHistory(redis_client, prefix=prefix, source="nlb", clock=WALL_CLOCK)
    nlb = Nlb(Settings(mode="legacy"), redis_client, sink,
              ZoneStore(redis_client, ZoneKeys(prefix), clock=WALL_CLOCK),
              instance_port=port, node_port=node_port)
    azs = [AzInstances(az, redis_client, port=port) for az in ("use1-az1", "use1-az2", "use1-az4")]
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(nlb.run(stopping)), *(asyncio.create_task(a.run(stopping))
                                                        for a in azs)]
    ids = {az.az: f"{prefix}-{az.az}" for az in azs}
    try:
        await _until(lambda: _true(nlb.started.is_set() and all(a.started.is_set() for a in azs)),
                     10, "started")
        for az, instance in ids.items():
            # What Network Manager records when it queues the launch (it is not running here).
            await sink.record(InstanceLaunched(instance=instance, az=az))
            await append_launch(redis_client, Launch(instance, az, "d-1", 0))
        await _until(lambda: _true(nlb.in_name == ()), 20,
                     "failover removes every AZ whose only target has no connectivity")
        for az, instance in ids.items():
            await sink.record(NetworkPropagated(instance=instance, az=az))
        await redis_client.hset(PROPAGATED_KEY, mapping=dict.fromkeys(ids.values(), "1"))
        await _until(lambda: _true(len(nlb.in_name) == 3), 20, "AZs back once propagated")
        reader, writer = await asyncio.open_connection(node_address("use1-az2"), node_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(ids["use1-az2"].encode())
    finally:
        stopping.set()
        await asyncio.gather(*tasks)
    recorded = [e for _, e in await sink.read()]
    # In service at registration, before any propagation: C2 broken for each instance.
    assert len(check_connectivity(recorded).violations) == 3
    assert len(check_velocity(recorded)) >= 1  # legacy failover removed 3 AZs at once


async def _true(value: bool) -> bool:
    return value


def _safe_nlb_and_az1(redis_client: aioredis.Redis, prefix: str
                      ) -> tuple[Nlb, AzInstances, history.RedisHistory]:
    """An NLB under velocity_control and use1-az1's instances on ports of their own."""
    port, node_port = free_port(), free_port()
    sink = history.RedisHistory(redis_client, prefix=prefix, source="nlb", clock=WALL_CLOCK)
    settings = Settings(mode="safe", protections=("queue_throttle", "velocity_control"))
    nlb = Nlb(settings, redis_client, sink,
              ZoneStore(redis_client, ZoneKeys(prefix), clock=WALL_CLOCK),
              instance_port=port, node_port=node_port)
    return nlb, AzInstances("use1-az1", redis_client, port=port), sink


async def test_safe_nlb_waits_for_connectivity_and_keeps_capacity(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    nlb, az, sink = _safe_nlb_and_az1(redis_client, prefix)
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(nlb.run(stopping)), asyncio.create_task(az.run(stopping))]
    instance = f"{prefix}-safe"
    try:
        await _until(lambda: _true(az.started.is_set() and nlb.started.is_set()), 10, "started")
        await sink.record(InstanceLaunched(instance=instance, az="use1-az1"))
        await append_launch(redis_client, Launch(instance, "use1-az1", "d-1", 0))
        # the name is written after the removal is decided: wait for the name itself
        await _until(lambda: _true("use1-az1" not in nlb.in_name), 20, "use1-az1 failed away")
        # velocity control: one AZ per window, never more (check_velocity below: ever)
        assert len(nlb.removals) == 1 and len(nlb.in_name) == 2
        await sink.record(NetworkPropagated(instance=instance, az="use1-az1"))
        await redis_client.hset(PROPAGATED_KEY, instance, "1")
        await _until(lambda: _true(nlb.checker.healthy("use1-az1") == [instance]), 20,
                     "in service once it answers checks")
    finally:
        stopping.set()
        await asyncio.gather(*tasks)
    recorded = [e for _, e in await sink.read()]
    assert check_connectivity(recorded).violations == []
    assert check_velocity(recorded) == []


async def test_the_operators_turn_failover_off_and_on_over_http(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    sink = history.RedisHistory(redis_client, prefix=prefix, source="nlb", clock=WALL_CLOCK)
    nlb = Nlb(Settings(mode="legacy"), redis_client, sink,
              ZoneStore(redis_client, ZoneKeys(prefix), clock=WALL_CLOCK))
    app = web.Application()
    routes(app, nlb)
    port = free_port()
    runner = await start_site(app, "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}/nlb/failover"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"enabled": False}) as r:
                assert r.status == 200 and (await r.json())["failover"] is False
            assert nlb.failover.enabled is False
            async with session.post(url, json={"enabled": "no"}) as r:
                assert r.status == 400 and "enabled" in (await r.json())["error"]
            assert nlb.failover.enabled is False  # bad input changes nothing
            async with session.post(url, json={"enabled": True}) as r:
                assert r.status == 200
    finally:
        await runner.cleanup()
    assert nlb.failover.enabled is True
    actions = [e for _, e in await sink.read() if isinstance(e, OperatorAction)]
    assert [a.detail for a in actions] == ["off", "on"]


async def test_the_nlb_checks_the_address_the_instance_listens_on_whenever_it_started(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """The NLB and the AZ's instances start at different moments (``dnsrace up`` starts them
    side by side while ec2_api launches). An instance launched in between must not shift the
    NLB's addresses by one: the NLB would check the older, propagated instance's listener and
    put the new one in service without connectivity (C2 broken under velocity_control)."""
    nlb, az, sink = _safe_nlb_and_az1(redis_client, prefix)
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(az.run(stopping))]
    early, late = f"{prefix}-before-the-nlb", f"{prefix}-after-the-nlb"
    try:
        await asyncio.wait_for(az.started.wait(), 10)
        await sink.record(InstanceLaunched(instance=early, az="use1-az1"))
        await append_launch(redis_client, Launch(early, "use1-az1", "d-1", 0))
        await sink.record(NetworkPropagated(instance=early, az="use1-az1"))
        await redis_client.hset(PROPAGATED_KEY, early, "1")
        await _until(lambda: _true(early in az.servers), 10, "the early instance listening")
        tasks.append(asyncio.create_task(nlb.run(stopping)))
        await asyncio.wait_for(nlb.started.wait(), 10)
        await sink.record(InstanceLaunched(instance=late, az="use1-az1"))
        await append_launch(redis_client, Launch(late, "use1-az1", "d-1", 0))
        await _until(lambda: _true(late in nlb.checker.targets and late in az.addresses), 10,
                     "the late launch seen by both")
        assert nlb.addresses[late] == az.addresses[late]
        # Checked and failed (nothing listens at its address yet), never in service.
        await _until(lambda: _true(nlb.checker.targets[late].fails
                                   >= nlb.checker.settings.unhealthy_threshold), 20,
                     "the late instance failed its checks")
        assert late not in nlb.checker.healthy("use1-az1")
    finally:
        stopping.set()
        await asyncio.gather(*tasks)
    recorded = [e for _, e in await sink.read()]
    assert check_connectivity(recorded).violations == []
