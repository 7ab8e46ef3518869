"""``nlb``: a Network Load Balancer with one proxy node per AZ, health checks and AZ DNS failover.

Targets are the instances ec2_api launches (registered from the launch stream, as an auto-scaling
group does). Every ``interval_s`` the health checker connects to at most ``checks_per_round``
targets (a connection refused or not made within ``timeout_s`` fails the check); each AZ's
healthy share feeds :func:`services.nlb.failover.decide`, and the name's A records follow through
the zone store (:mod:`services.nlb.name`). Each AZ node (``127.(50 + AZ index).0.1``) forwards a
connection to a healthy target of its AZ.

Legacy (2025): a target counts in service at registration, before its network state propagated
(C2 breaks), and failover may remove every AZ (C3 breaks). With ``velocity_control`` in force
(the NLB's protection, whatever else is on) a target needs passing checks first, and failover
removes at most the velocity limit. ``POST /nlb/failover``
``{"enabled": false|true}`` is the operators' switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from services.config import Settings
from services.core import events
from services.core.addresses import INSTANCE_PORT, NODE_PORT, node_address
from services.core.cascade_invariants import velocity_budget
from services.core.names import AZS
from services.nlb.failover import FailoverSettings, Removal, decide
from services.nlb.health import HealthChecker, HealthSettings, TargetState
from services.nlb.metrics import TARGETS_FAILED
from services.nlb.name import name_batch
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import ServiceContext, observability_app, redis_client, start_site
from services.store import history, launches
from services.store.zone import ZoneStore

log = logging.getLogger(__name__)

NLB = "api"
HEALTHY = Gauge("dnsrace_nlb_targets_healthy", "Targets in service, per AZ", ["az"])
AZ_RECORDS = Gauge("dnsrace_nlb_name_az_records", "AZ node records the NLB's DNS name holds")
WITHOUT_CONNECTIVITY = Counter(
    "dnsrace_nlb_in_service_without_connectivity",
    "Targets the NLB put in service before Network Manager propagated their network state (C2)",
    ["az"])
AZ_REMOVALS = Counter("dnsrace_nlb_az_removals",
                      "AZs automatic failover took out of the NLB's DNS name", ["az"])
REMOVED_IN_WINDOW = Gauge("dnsrace_nlb_azs_removed_in_window",
                          "AZs failover removed from the NLB's name within the last velocity "
                          "window (C3's window)")
VELOCITY_LIMIT = Gauge("dnsrace_nlb_velocity_limit",
                       "AZs failover may remove within one velocity window (C3's limit)")
for _az in AZS:  # series from the start: 0 before any removal, not "no data"
    WITHOUT_CONNECTIVITY.labels(_az)
    AZ_REMOVALS.labels(_az)


@dataclass
class Nlb:
    settings: Settings
    client: aioredis.Redis
    sink: history.RedisHistory
    zone: ZoneStore
    instance_port: int = INSTANCE_PORT
    node_port: int = NODE_PORT
    checker: HealthChecker = field(init=False)
    failover: FailoverSettings = field(init=False)
    in_name: tuple[str, ...] = AZS
    removals: list[Removal] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)
    after: str = "0-0"
    rr: itertools.count[int] = field(default_factory=itertools.count)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the NLB listens and reads launches: those appended after are registered."""

    def __post_init__(self) -> None:
        # velocity_control is the NLB's protection: capacity moves only on checks (a target
        # enters service after passing ones) and failover removes at most the velocity limit.
        guarded = "velocity_control" in self.settings.active_protections
        self.checker = HealthChecker(HealthSettings(
            interval_s=self.settings.nlb_check_interval_s,
            legacy_in_service_on_register=not guarded))
        self.failover = FailoverSettings(threshold=self.settings.nlb_failover_threshold,
                                         velocity_control=guarded,
                                         max_share=self.settings.velocity_max_share,
                                         window_s=self.settings.velocity_window_s)

    def now_s(self) -> float:
        return WALL_CLOCK.now_ms() / 1000

    async def register_launches(self) -> None:
        for entry_id, launch in await launches.read_launches(self.client, self.after, 1000):
            self.after = entry_id
            # From the launch's slot, not a count of what this process saw: the AZ's
            # instances listen on the same address whenever each of them started reading.
            if (address := launches.address_of(launch)) is None:
                continue
            self.addresses[launch.instance_id] = address
            moved = self.checker.register(launch.instance_id, launch.az, self.now_s())
            if moved is not None:
                await self.put_in_service(launch.instance_id, launch.az)

    async def put_in_service(self, target: str, az: str) -> None:
        """Record a target going in service; count it (C2) if its state has not propagated."""
        await self.sink.record(events.TargetInService(instance=target, az=az, nlb=NLB))
        if await self.client.hget(launches.PROPAGATED_KEY, target) is None:
            WITHOUT_CONNECTIVITY.labels(az).inc()
            if not self.checker.settings.legacy_in_service_on_register:
                log.warning("%s in service without connectivity: its checks at %s:%d passed "
                            "before its network state propagated", target,
                            self.addresses.get(target), self.instance_port)

    async def check(self, target: str) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(
                self.addresses[target], self.instance_port), self.checker.settings.timeout_s)
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    async def round(self) -> None:
        due = self.checker.due()
        results = await asyncio.gather(*(self.check(t) for t in due))
        for target, passed in zip(due, results, strict=True):
            moved = self.checker.report(target, passed, self.now_s())
            if moved is not None and moved.was is TargetState.HEALTHY:
                TARGETS_FAILED.inc()
            if moved is not None and moved.now is TargetState.HEALTHY:
                await self.put_in_service(target, moved.az)
        shares = {az: self.checker.healthy_share(az) for az in AZS}
        for az in AZS:
            HEALTHY.labels(az).set(len(self.checker.healthy(az)))
        decision = decide(shares, self.in_name, self.removals, self.now_s(), self.failover)
        for az in decision.removed:
            self.removals.append(Removal(az, self.now_s()))
            await self.sink.record(events.AzFailedAway(
                nlb=NLB, az=az, azs=len(AZS), max_share=self.failover.max_share,
                window_s=self.failover.window_s))
            AZ_REMOVALS.labels(az).inc()
        now, window_s = self.now_s(), self.failover.window_s
        REMOVED_IN_WINDOW.set(sum(1 for r in self.removals if now - r.at_s < window_s))
        if decision.in_name != self.in_name:
            await self.write_name(decision.in_name)

    async def write_name(self, in_name: tuple[str, ...]) -> None:
        await self.zone.apply(name_batch(NLB, in_name, {az: node_address(az) for az in AZS}))
        self.in_name = in_name
        AZ_RECORDS.set(len(in_name))
        log.info("%s's name holds %s", NLB, ", ".join(in_name) or "no AZ")

    async def forward_from(self, az: str, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        healthy = self.checker.healthy(az)
        try:
            if not healthy:
                return
            target = healthy[next(self.rr) % len(healthy)]
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(
                self.addresses[target], self.instance_port), 2.0)
            async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):
                    while data := await r.read(65536):
                        w.write(data)
                        await w.drain()
                    w.close()
            await asyncio.wait_for(asyncio.gather(pipe(reader, up_w), pipe(up_r, writer)), 10)
        except (OSError, TimeoutError):
            pass  # the client sees its connection closed: a failed call it counts
        finally:
            writer.close()

    async def run(self, stopping: asyncio.Event) -> None:
        nodes = [await asyncio.start_server(
            functools.partial(self.forward_from, az), node_address(az), self.node_port)
            for az in AZS]
        last = await self.client.xrevrange(launches.LAUNCHES_STREAM, count=1)
        self.after = last[0][0] if last else "0-0"
        VELOCITY_LIMIT.set(velocity_budget(len(AZS), self.failover.max_share))
        await self.write_name(AZS)
        self.started.set()
        try:
            while not stopping.is_set():
                try:
                    await self.register_launches()
                    await self.round()
                except RedisError as e:
                    log.warning("Redis call failed, retrying: %s", e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.checker.settings.interval_s)
        finally:
            for node in nodes:
                node.close()


def routes(app: web.Application, nlb: Nlb) -> None:
    async def failover(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            enabled = body["enabled"]
            if not isinstance(enabled, bool):
                raise TypeError("enabled must be true or false")
        except (ValueError, KeyError, TypeError) as e:
            return web.json_response({"error": f'want {{"enabled": true|false}}: {e}'}, status=400)
        nlb.failover = dataclasses.replace(nlb.failover, enabled=enabled)
        await nlb.sink.record(events.OperatorAction(
            action="nlb_failover", target=NLB, detail="on" if enabled else "off"))
        return web.json_response({"nlb": NLB, "failover": enabled})

    app.router.add_post("/nlb/failover", failover)


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    client = redis_client(settings)
    site = None
    try:
        nlb = Nlb(settings, client, history.RedisHistory(client, source="nlb", clock=WALL_CLOCK),
                  ZoneStore(client, clock=WALL_CLOCK))
        app = observability_app(ctx)
        routes(app, nlb)
        site = await start_site(app, "127.0.0.1", settings.metrics_port("nlb"))
        ctx.ready = True
        await nlb.run(ctx.stopping)
    finally:
        ctx.ready = False
        await client.aclose()
        if site is not None:
            await site.cleanup()
