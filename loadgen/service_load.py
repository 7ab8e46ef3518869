"""``service_load``: the clients of a service behind the NLB, calling it through its DNS name.

Each call resolves ``<nlb>.elb.us-east-1.amazonaws.com`` through our DNS with the load
generator's stub resolver of one of :data:`CLIENTS` client hosts (each its own cache: answers
for their TTL, empty answers for the negative TTL), picks one of the AZ nodes the name holds
and sends it an HTTP request; the NLB node forwards the connection to a healthy instance of
its AZ. Calls go out at
``service_load_rate`` a second (open model, at most ``MAX_IN_FLIGHT`` outstanding; beyond that a
call is dropped and counted as ``timeout``) until the process is stopped. Outcomes are counted in
``dnsrace_service_requests_total{outcome}``: ``ok``, the DNS outcomes (``dns_nodata`` when
failover emptied the name), ``connect_error``, ``http_error`` (the node closed the connection:
no healthy target in its AZ), ``timeout``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import aiohttp
from prometheus_client import Counter

from loadgen.outcome import Outcome
from loadgen.pacing import arrivals
from loadgen.resolver import StubResolver
from services.config import Settings
from services.core.addresses import NODE_PORT
from services.core.names import ZONE
from services.runtime.service import ServiceContext, observability_app, start_site

log = logging.getLogger(__name__)

NLB = "api"
"""The NLB the service sits behind (the nlb process's)."""
CLIENTS = 20
"""Client hosts, each with its own stub resolver cache; calls go to them in turn."""
MAX_IN_FLIGHT = 64
REQUEST_TIMEOUT_S = 2.0

SERVICE_REQUESTS = Counter("dnsrace_service_requests",
                           "Calls of the service behind the NLB, through its DNS name, by outcome",
                           ["outcome"])
for _outcome in Outcome:
    SERVICE_REQUESTS.labels(_outcome.value)


def nlb_name(nlb: str = NLB) -> str:
    """The NLB's DNS name (as services.nlb.name writes it)."""
    return f"{nlb}.elb.{ZONE}"


async def call_once(session: aiohttp.ClientSession, resolver: StubResolver, name: str,
                    pick: int, timeout_s: float = REQUEST_TIMEOUT_S) -> Outcome:
    """Resolve the name, call one of its nodes; how it ended."""
    resolution = await resolver.resolve(name)
    if resolution.outcome is not Outcome.OK:
        return resolution.outcome
    if not resolution.addresses:
        return Outcome.DNS_NODATA
    address = resolution.addresses[pick % len(resolution.addresses)]
    try:
        async with session.get(f"http://{address}:{NODE_PORT}/",
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
            await r.read()
            return Outcome.OK if r.status == 200 else Outcome.HTTP_ERROR
    except TimeoutError:
        return Outcome.TIMEOUT
    except aiohttp.ClientConnectorError:
        return Outcome.CONNECT_ERROR
    except aiohttp.ClientError:
        return Outcome.HTTP_ERROR


async def run_service_load(settings: Settings, stop: asyncio.Event,
                           rate: float | None = None) -> None:
    """Call the service at ``rate`` a second (default ``service_load_rate``) until ``stop``."""
    rate = settings.service_load_rate if rate is None else rate
    name = nlb_name()
    resolvers = [StubResolver(settings.dns_host, settings.dns_port, timeout_s=1.0)
                 for _ in range(CLIENTS)]
    in_flight: set[asyncio.Task[None]] = set()
    picks = itertools.count()

    async def one(k: int) -> None:
        outcome = await call_once(session, resolvers[k % CLIENTS], name, next(picks))
        SERVICE_REQUESTS.labels(outcome.value).inc()

    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, force_close=True)) as session:
        try:
            async for k in arrivals(rate, stop):
                if len(in_flight) >= MAX_IN_FLIGHT:
                    SERVICE_REQUESTS.labels(Outcome.TIMEOUT.value).inc()
                    continue
                task = asyncio.create_task(one(k))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            for task in list(in_flight):
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            await asyncio.gather(*(r.aclose() for r in resolvers))


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    site = await start_site(observability_app(ctx), "127.0.0.1",
                            settings.metrics_port("service_load"))
    try:
        ctx.ready = True
        log.info("calling %s %.0f times a second", nlb_name(), settings.service_load_rate)
        await run_service_load(settings, ctx.stopping)
    finally:
        ctx.ready = False
        await site.cleanup()
