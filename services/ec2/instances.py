"""``instances_azN``: the instances launched in one AZ, each a real listener on its own address.

Every launch in the AZ (from ec2_api's launch stream) gets the loopback address of its slot
(:func:`instance_address`: ``127.(40 + AZ index).h.l``), the one the NLB checks. The instance
accepts connections only once Network Manager has propagated its network state
(:data:`~services.store.launches.PROPAGATED_KEY`); until then nothing listens there and a
connection is refused, as an instance without connectivity answers no one. Once up, it answers
any HTTP request with ``200`` and its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import RedisError

from services.core.addresses import INSTANCE_PORT
from services.core.names import AZS
from services.runtime.service import ServiceContext, observability_app, redis_client, start_site
from services.store import launches
from services.store.launches import PROPAGATED_KEY

log = logging.getLogger(__name__)

TICK_S = 0.1

WITHOUT_CONNECTIVITY = Gauge("dnsrace_instances_without_connectivity",
                             "Launched instances whose network state has not propagated", ["az"])
CONNECTED = Gauge("dnsrace_instances_connected", "Instances listening (state propagated)", ["az"])


async def _serve_instance(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          instance: str) -> None:
    with contextlib.suppress(ConnectionError, TimeoutError, asyncio.IncompleteReadError):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
        body = instance.encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (len(body), body))
        await writer.drain()
    writer.close()


class AzInstances:
    def __init__(self, az: str, client: aioredis.Redis, port: int = INSTANCE_PORT) -> None:
        self.az = az
        self.client = client
        self.port = port
        self.after = "0-0"
        self.addresses: dict[str, str] = {}
        self.waiting: set[str] = set()
        self.servers: dict[str, asyncio.Server] = {}
        self.started = asyncio.Event()

    async def start(self) -> None:
        last = await self.client.xrevrange(launches.LAUNCHES_STREAM, count=1)
        if last:
            self.after = last[0][0]
        self.started.set()

    async def take_launches(self) -> None:
        for entry_id, launch in await launches.read_launches(self.client, self.after, 1000):
            self.after = entry_id
            if launch.az != self.az or (address := launches.address_of(launch)) is None:
                continue
            self.addresses[launch.instance_id] = address
            self.waiting.add(launch.instance_id)

    async def bring_up(self) -> None:
        if not self.waiting:
            return
        order = sorted(self.waiting)
        marks = await self.client.hmget(PROPAGATED_KEY, order)
        for instance, mark in zip(order, marks, strict=True):
            if mark is None:
                continue
            self.waiting.discard(instance)
            server = await asyncio.start_server(
                functools.partial(_serve_instance, instance=instance),
                self.addresses[instance], self.port)
            self.servers[instance] = server

    async def run(self, stopping: asyncio.Event) -> None:
        await self.start()
        try:
            while not stopping.is_set():
                try:
                    await self.take_launches()
                    await self.bring_up()
                except RedisError as e:
                    log.warning("Redis call failed, retrying: %s", e)
                WITHOUT_CONNECTIVITY.labels(self.az).set(len(self.waiting))
                CONNECTED.labels(self.az).set(len(self.servers))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), TICK_S)
        finally:
            for server in self.servers.values():
                server.close()


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    az = ctx.az or AZS[0]
    client = redis_client(settings)
    site = None
    try:
        site = await start_site(observability_app(ctx), "127.0.0.1",
                                settings.metrics_port("instances", AZS.index(az)))
        ctx.ready = True
        await AzInstances(az, client).run(ctx.stopping)
    finally:
        ctx.ready = False
        await client.aclose()
        if site is not None:
            await site.cleanup()
