"""The load-balancer fleet: one DynamoDB-speaking HTTP listener per load balancer.

Every load balancer of :func:`services.store.health.fleet` listens on its own loopback address
(``lb.ip:lb_port``) and speaks enough of DynamoDB's JSON protocol (``X-Amz-Target``
``DynamoDB_20120810.<Operation>``) for boto3 to create, describe, list and delete tables and to
put, get and delete items.  All of them share one in-memory :class:`TableStore`.

Health lives in Redis (:class:`HealthStore`); the fleet follows it through the store's change
channel and an unhealthy load balancer answers ``503 ServiceUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram
from redis.exceptions import RedisError

from services.config import Settings, load
from services.core.backoff import RetryBackoff
from services.core.balancers import LoadBalancer, fleet
from services.core.names import REGIONAL
from services.errors import DnsraceError
from services.fleet.capacity import Capacity
from services.fleet.tables import OPERATIONS, TableStore, operation_of
from services.fleet.values import DynamoError, ErrorKind, parse_body
from services.runtime.service import (
    ServiceContext,
    observability_app,
    redis_client,
    run_service,
    start_site,
    supervised,
)
from services.runtime.swallowed import swallowed
from services.store.follow import follow as follow_channel
from services.store.health import HealthStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body a load balancer reads (an item is at most 400 KB)."""
CONTENT_TYPE = "application/x-amz-json-1.0"
UNKNOWN_OPERATION = "unknown"
LISTEN_BACKLOG = 1024
"""Connections a listener queues before the kernel drops SYNs (clients then wait 1 s)."""
HEALTH_LOAD_TIMEOUT_S = 10.0
"""How long start-up waits for the first reading of health from Redis."""

LB_REQUESTS = Counter(
    "dnsrace_lb_requests", "Requests answered by the load balancers",
    ["operation", "outcome"],
)
LB_SECONDS = Histogram(
    "dnsrace_lb_request_seconds", "Time a load balancer took to answer a request",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
LB_HEALTHY = Gauge("dnsrace_lb_healthy", "Load balancers of the fleet that are healthy")
LB_HEALTH_ERRORS = Counter(
    "dnsrace_lb_health_follow_errors",
    "Readings of load-balancer health from Redis that did not decode (read again after a "
    "back-off)",
)
READ_ERRORS = swallowed("lb_health_read")
UNDECODABLE = (ValueError, KeyError, TypeError)
"""What a health value that is not HealthStore's JSON raises."""
UNDECODABLE_RETRY = RetryBackoff(base_s=0.05, cap_s=1.0)
for _operation in (*OPERATIONS, UNKNOWN_OPERATION):
    LB_REQUESTS.labels(_operation, "ok")
    for _kind in ErrorKind:
        LB_REQUESTS.labels(_operation, _kind.label)


class HealthView:
    """Which load balancers are healthy, kept current from Redis by :meth:`follow`."""

    def __init__(self, store: HealthStore, lbs: tuple[LoadBalancer, ...],
                 backoff: RetryBackoff = UNDECODABLE_RETRY) -> None:
        self.store = store
        self.lbs = lbs
        self.backoff = backoff
        self.healthy: dict[str, bool] = {lb.ip: True for lb in lbs}
        self.loaded = asyncio.Event()

    def is_healthy(self, ip: str) -> bool:
        return self.healthy.get(ip, True)

    async def read(self) -> None:
        """Read every load balancer's health; one that Redis does not know is healthy.

        A value that is not the JSON HealthStore writes is counted and read again after a
        back-off until someone fixes it; Redis errors are the caller's.
        """
        attempt = 0
        while True:
            try:
                known = await self.store.all()
                break
            except UNDECODABLE as e:
                attempt += 1
                LB_HEALTH_ERRORS.inc()
                delay = self.backoff.delay(attempt)
                log.warning("load-balancer health in %s does not decode (%r); reading it again "
                            "in %.2f s", self.store.key, e, delay)
                await asyncio.sleep(delay)
        for lb in self.lbs:
            health = known.get(lb.ip)
            healthy = True if health is None else health.healthy
            if healthy != self.healthy[lb.ip]:
                log.info("%s (%s, %s) is now %s", lb.name, lb.ip, lb.az,
                         "healthy" if healthy else "UNHEALTHY")
            self.healthy[lb.ip] = healthy
        LB_HEALTHY.set(sum(self.healthy.values()))
        self.loaded.set()

    async def refresh(self) -> None:
        """:meth:`read` on a change notice; if Redis fails, the view stays as it was (counted,
        logged) until the next notice or re-subscription reads it."""
        try:
            await self.read()
        except RedisError as e:
            READ_ERRORS.inc()
            log.warning("could not read load-balancer health: %s", e)

    async def follow(self) -> None:
        """Read health again on every change notice and after every (re)subscription, so a
        change published while Redis was away is not lost; until cancelled."""
        async for _ in follow_channel(self.store.client, self.store.channel, feed="lb_health",
                                      resync=self.read):
            await self.refresh()


async def _listen(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True, backlog=LISTEN_BACKLOG).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def _response(status: int, payload: dict[str, Any]) -> web.Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, headers={
        "Content-Type": CONTENT_TYPE,
        "x-amzn-RequestId": uuid.uuid4().hex.upper(),
        "x-amz-crc32": str(zlib.crc32(body)),
    })


class FleetError(DnsraceError, RuntimeError):
    """The fleet could not start: its health could not be read in time."""


class LoadBalancerFleet:
    """The listeners of every load balancer, and the health they follow; use as
    ``async with LoadBalancerFleet(...)``: the follower is a task of the block, whose failure
    ends the block with its error."""

    def __init__(self, settings: Settings, health: HealthStore, tables: TableStore | None = None,
                 health_timeout_s: float = HEALTH_LOAD_TIMEOUT_S, az: str | None = None) -> None:
        self.settings = settings
        self.health_timeout_s = health_timeout_s
        self.lbs = tuple(lb for lb in fleet(settings) if az in (None, lb.az))
        self.health_store = health
        self.view = HealthView(health, self.lbs)
        self.tables = tables if tables is not None else TableStore(time.time)
        self._running: contextlib.AbstractAsyncContextManager[None] | None = None
        self.capacity = {lb.ip: Capacity(lb.name, settings.lb_max_in_flight, settings.lb_queue,
                                         settings.lb_service_s) for lb in self.lbs}

    def url(self, lb: LoadBalancer) -> str:
        return f"http://{lb.ip}:{self.settings.lb_port}/"

    async def __aenter__(self) -> LoadBalancerFleet:
        running = self._run()
        await running.__aenter__()
        self._running = running
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        running, self._running = self._running, None
        assert running is not None, "the fleet was not started"
        return await running.__aexit__(exc_type, exc, tb)

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        """Register the fleet's health, follow it, and once read, open every listener."""
        await self.health_store.register(self.lbs)
        async with supervised() as tasks:
            follower = tasks.create_task(self.view.follow(), name="lb-health")
            try:
                await self._first_reading()
                async with contextlib.AsyncExitStack() as listeners:
                    for lb in self.lbs:
                        listeners.push_async_callback((await self._listen(lb)).cleanup)
                    log.info("%d load balancers listening on %s, port %d", len(self.lbs),
                             ", ".join(lb.ip for lb in self.lbs), self.settings.lb_port)
                    yield
            finally:
                follower.cancel()

    async def _first_reading(self) -> None:
        try:
            async with asyncio.timeout(self.health_timeout_s):
                await self.view.loaded.wait()
        except TimeoutError:
            raise FleetError(f"could not read load-balancer health from {self.health_store.key} "
                             f"within {self.health_timeout_s:g} s (see the warnings above)"
                             ) from None

    async def _listen(self, lb: LoadBalancer) -> web.AppRunner:
        try:
            return await _listen(self._app(lb), lb.ip, self.settings.lb_port)
        except OSError as e:
            raise OSError(e.errno, f"cannot listen on {lb.ip}:{self.settings.lb_port} for "
                                   f"{lb.name}: {e.strerror} (is 127.0.0.0/8 routed to lo?)"
                          ) from e

    def _app(self, lb: LoadBalancer) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)

        async def call(request: web.Request) -> web.Response:
            return await self.handle(lb, request)

        async def ping(_: web.Request) -> web.Response:
            if not self.view.is_healthy(lb.ip):
                return web.Response(status=503, text=f"unhealthy: {REGIONAL} {lb.name}\n")
            return web.Response(text=f"healthy: {REGIONAL} {lb.name}\n")

        app.router.add_post("/{tail:.*}", call)
        app.router.add_get("/", ping)
        return app

    async def handle(self, lb: LoadBalancer, request: web.Request) -> web.Response:
        """Answer one DynamoDB call; bad input is an error response, never an exception."""
        started = time.perf_counter()
        operation = UNKNOWN_OPERATION
        try:
            if not self.view.is_healthy(lb.ip):
                raise DynamoError(ErrorKind.SERVICE_UNAVAILABLE,
                                  f"The service is currently unavailable or busy ({lb.name})")
            operation = operation_of(request.headers.get("X-Amz-Target"))
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise DynamoError(ErrorKind.VALIDATION,
                                  f"Request body exceeds {MAX_BODY_BYTES} bytes") from None
            async with self.capacity[lb.ip].slot():
                status, payload = 200, self.tables.dispatch(operation, parse_body(body))
            outcome = "ok"
        except DynamoError as e:
            status, payload, outcome = e.kind.status, e.body(), e.kind.label
        except Exception:
            log.exception("%s: %s failed", lb.name, operation)
            error = DynamoError(ErrorKind.INTERNAL, "Internal server error")
            status, payload, outcome = error.kind.status, error.body(), error.kind.label
        LB_REQUESTS.labels(operation, outcome).inc()
        LB_SECONDS.observe(time.perf_counter() - started)
        return _response(status, payload)


async def serve(ctx: ServiceContext) -> None:
    """The endpoints process: the whole fleet until ``ctx.stopping`` is set."""
    settings = ctx.settings
    redis = redis_client(settings)
    metrics = await start_site(observability_app(ctx), "127.0.0.1",
                               settings.metrics_port("endpoints"))
    try:
        async with LoadBalancerFleet(settings, HealthStore(redis), az=ctx.az):
            ctx.ready = True
            await ctx.stopping.wait()
    finally:
        ctx.ready = False
        await metrics.cleanup()
        await redis.aclose()


def main() -> int:
    return run_service(serve, load(), "endpoints")


if __name__ == "__main__":
    raise SystemExit(main())
