"""``netmgr``: Network Manager, propagating launched instances' network state at finite throughput.

It follows ec2_api's launch stream (:mod:`services.store.launches`), queues every launch in a
:class:`~services.ec2.propagation.PropagationQueue` served at ``netmgr_rate_per_s``, publishes
the backlog (ec2_api answers ``RequestLimitExceeded`` on it under ``queue_throttle``), and marks
each propagated instance in :data:`PROPAGATED_KEY` (instance id -> ms of its propagation), which
the instance listeners read before accepting connections. History: ``InstanceLaunched`` when a
launch is queued, ``NetworkPropagated`` when its state is out (C2 is judged on them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from services.core import events
from services.ec2.propagation import PropagationQueue
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import ServiceContext, observability_app, redis_client, start_site
from services.store import history, launches

log = logging.getLogger(__name__)

PROPAGATED_KEY = launches.PROPAGATED_KEY
"""A Redis hash: instance id -> ms (Network Manager's clock) its network state propagated."""
TICK_S = 0.1

BACKLOG = Gauge("dnsrace_netmgr_backlog", "Instances waiting for their network state")
OLDEST = Gauge("dnsrace_netmgr_oldest_wait_seconds",
               "How long the oldest waiting instance has run without connectivity")
PROPAGATED = Counter("dnsrace_netmgr_propagated", "Network-state propagations finished")
REDIS_ERRORS = Counter("dnsrace_netmgr_redis_errors",
                       "Redis calls Network Manager retried (a restart, a timeout)")


class NetworkManager:
    def __init__(self, rate_per_s: float, client: aioredis.Redis,
                 sink: history.RedisHistory) -> None:
        self.queue = PropagationQueue(rate_per_s)
        self.client = client
        self.sink = sink
        self.after = "0-0"
        """The launch stream's last id taken (:meth:`start` skips launches of earlier runs)."""
        self.azs: dict[str, str] = {}
        self.started = asyncio.Event()
        """Set once the manager knows where in the launch stream it starts."""

    async def start(self) -> None:
        last = await self.client.xrevrange(launches.LAUNCHES_STREAM, count=1)
        if last:
            self.after = last[0][0]
        self.started.set()

    def now_s(self) -> float:
        return WALL_CLOCK.now_ms() / 1000

    async def take_launches(self) -> None:
        for entry_id, launch in await launches.read_launches(self.client, self.after, 1000):
            self.after = entry_id
            self.queue.offer(launch.instance_id, self.now_s())
            self.azs[launch.instance_id] = launch.az
            await self.sink.record(events.InstanceLaunched(instance=launch.instance_id,
                                                           az=launch.az))

    async def propagate(self) -> None:
        now = self.now_s()
        done = self.queue.propagate(now)
        if done:
            # History first: the instances start accepting once the mark is written, and a
            # health check may pass and "in service" be recorded right after; C2, judged on
            # the history, must already find the propagation there.
            await self.sink.record_many([
                events.NetworkPropagated(instance=p.instance, az=self.azs.pop(p.instance, ""))
                for p in done])
            await self.client.hset(PROPAGATED_KEY, mapping={
                p.instance: str(int(p.at_s * 1000)) for p in done})
            PROPAGATED.inc(len(done))
        await launches.set_netmgr_backlog(self.client, len(self.queue))
        BACKLOG.set(len(self.queue))
        OLDEST.set(self.queue.oldest_age_s(now))

    async def run(self, stopping: asyncio.Event) -> None:
        await self.start()
        while not stopping.is_set():
            try:
                await self.take_launches()
                await self.propagate()
            except RedisError as e:
                REDIS_ERRORS.inc()
                log.warning("Redis call failed, retrying: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), TICK_S)


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    client = redis_client(settings)
    site = None
    try:
        manager = NetworkManager(settings.netmgr_rate_per_s, client,
                                 history.RedisHistory(client, source="netmgr", clock=WALL_CLOCK))
        site = await start_site(observability_app(ctx), "127.0.0.1",
                                settings.metrics_port("netmgr"))
        log.info("Network Manager propagating %.1f instances/s", settings.netmgr_rate_per_s)
        ctx.ready = True
        await manager.run(ctx.stopping)
    finally:
        ctx.ready = False
        await client.aclose()
        if site is not None:
            await site.cleanup()
