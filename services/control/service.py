"""The control service: a fault API in the shape of Toxiproxy and Chaos Mesh.

``POST /faults`` starts a timed fault, ``GET /faults`` lists the active ones, ``DELETE
/faults/{id}`` ends one, ``POST /faults/reset`` ends all. Every fault ends by itself at its
expiry: the expiry loop here sleeps until the next one (woken early by any change), and the
enactors ignore a fault past its expiry even if this process is gone. On start, faults that
expired while the service was down are ended (SIGCONT sent, health restored).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import signal
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from services.config import ConfigError
from services.control.requests import FaultRequestError, parse_fault_request
from services.core import events, names
from services.core.backoff import RetryBackoff
from services.core.balancers import LoadBalancer, fleet, under_lb_fault
from services.core.faults import (
    CRASH_FAULTS,
    PARTITIONER_KEY,
    PIDS_KEY,
    SUPERVISOR_KEY,
    Fault,
    FaultType,
    LbHealthParams,
    params_json,
)
from services.runtime import netns
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import (
    ServiceContext,
    observability_app,
    redis_client,
    start_site,
    supervised,
)
from services.runtime.swallowed import swallowed
from services.store import history
from services.store.faults import FaultBook
from services.store.health import HealthStore

log = logging.getLogger(__name__)
EXPIRY_ERRORS = swallowed("fault_expiry")
EXPIRY_RETRY = RetryBackoff(base_s=0.1, cap_s=1.0)
"""Between two expiry checks that Redis failed: 0.1 s doubling to 1 s, full jitter."""

FAULT_ACTIVE = Gauge("dnsrace_fault_active", "1 while a fault of this type and target is active",
                     ["type", "target"])
FAULTS_STARTED = Counter("dnsrace_faults_started_total", "Faults started", ["type"])
FAULTS_ENDED = Counter("dnsrace_faults_ended_total", "Faults ended, by why", ["type", "why"])
REQUESTS = Counter("dnsrace_control_requests_total", "Control API requests by outcome",
                   ["outcome"])
ACTION_ERRORS = Counter("dnsrace_control_action_errors_total",
                        "Fault actions that could not be carried out", ["type"])
for _type in FaultType:
    FAULTS_STARTED.labels(_type)
    ACTION_ERRORS.labels(_type)
    for _target in ("all", *names.AZS):
        FAULT_ACTIVE.labels(_type, _target).set(0)
for _outcome in ("ok", "rejected", "error"):
    REQUESTS.labels(_outcome)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def fault_view(fault: Fault) -> dict[str, Any]:
    return {
        "id": fault.id, "type": str(fault.type), "target": fault.target,
        "params": params_json(fault.params),
        "started_at": _iso(fault.started_ms), "expires_at": _iso(fault.expires_ms),
        "started_ms": fault.started_ms, "expires_ms": fault.expires_ms,
    }


class Controller:
    """Starts and ends faults: the effects on processes and health, the book, the history."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.settings = ctx.settings
        self.client = redis_client(ctx.settings)
        self.book = FaultBook(self.client)
        self.health = HealthStore(self.client)
        self.sink = history.RedisHistory(self.client, source="control", clock=WALL_CLOCK)
        self.changed = asyncio.Event()
        self.stopping = asyncio.Event()
        self.lock = asyncio.Lock()
        self.lbs = {lb.name: lb for lb in fleet(ctx.settings)}

    async def _enactor_pids(self, target: str) -> list[int]:
        pids = await self.client.hgetall(PIDS_KEY)
        return [int(pid) for az, pid in pids.items() if target in (az, "all")]

    def _lbs(self, target: str) -> list[LoadBalancer]:
        if target == "all":
            return list(self.lbs.values())
        if target in names.AZS:
            return [lb for lb in self.lbs.values() if lb.az == target]
        return [self.lbs[target]]

    async def _effect(self, fault: Fault, starting: bool) -> None:
        """What a fault does to the world when it starts and when it ends."""
        try:
            if fault.type is FaultType.ENACTOR_PAUSE:
                for pid in await self._enactor_pids(fault.target):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP if starting else signal.SIGCONT)
            elif isinstance(fault.params, LbHealthParams):
                for lb in self._lbs(fault.target):
                    await self.health.set(lb.ip, under_lb_fault(lb, fault.params.capacity,
                                                                active=starting))
            elif fault.type is FaultType.AZ_PARTITION and netns.available(names.AZS[0]):
                # In containers there is no namespace here: 'up --containers' cuts the AZ.
                await netns.partition(self.settings, fault.target, cut=starting)
        except (OSError, RedisError) as e:
            ACTION_ERRORS.labels(fault.type).inc()
            log.error("fault %s %s: %s", fault.id, "start" if starting else "end", e)

    async def start(self, fault: Fault) -> Fault:
        async with self.lock:
            await self.book.add(fault)
            await self._effect(fault, starting=True)
            FAULTS_STARTED.labels(fault.type).inc()
            FAULT_ACTIVE.labels(fault.type, fault.target).set(1)
            await self.sink.record(events.FaultStarted(
                fault_id=fault.id, type=fault.type, target=fault.target,
                expires_ms=fault.expires_ms, params=params_json(fault.params)))
        log.info("fault %s started: %s on %s until %s", fault.id, fault.type, fault.target,
                 _iso(fault.expires_ms))
        self.changed.set()
        return fault

    async def end(self, fault_id: str, why: str) -> Fault | None:
        async with self.lock:
            fault = await self.book.remove(fault_id)
            if fault is None:
                return None
            await self._effect(fault, starting=False)
            FAULTS_ENDED.labels(fault.type, why).inc()
            still = [f for f in await self.book.all()
                     if (f.type, f.target) == (fault.type, fault.target)]
            FAULT_ACTIVE.labels(fault.type, fault.target).set(1 if still else 0)
            await self.sink.record(events.FaultEnded(
                fault_id=fault.id, type=fault.type, target=fault.target, why=why))
        log.info("fault %s ended (%s)", fault.id, why)
        self.changed.set()
        return fault

    async def expire_forever(self) -> None:
        """End each fault at its expiry; never polls: sleeps until the next expiry or a change.

        Runs until :meth:`stop_expiring`: ended by an event, not by cancellation, which
        redis-py does not always survive in the middle of a call (redis/redis-py#2028). While
        Redis fails, the check is retried under :data:`EXPIRY_RETRY`, each failure counted.
        """
        failures = 0
        while not self.stopping.is_set():
            self.changed.clear()
            timeout = 5.0
            try:
                now = WALL_CLOCK.now_ms()
                for fault in await self.book.all():
                    if fault.expires_ms <= now:
                        await self.end(fault.id, "expired")
                    else:
                        timeout = min(timeout, (fault.expires_ms - now) / 1000)
                failures = 0
            except RedisError as e:
                failures += 1
                EXPIRY_ERRORS.inc()
                timeout = EXPIRY_RETRY.delay(failures)
                log.warning("expiry check failed: %s; checking again in %.2f s", e, timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=max(timeout, 0.001))

    def stop_expiring(self) -> None:
        """Make :meth:`expire_forever` return (at once if it waits, after its Redis call if not)."""
        self.stopping.set()
        self.changed.set()

    async def stop(self, expiry: asyncio.Task[None], timeout_s: float = 5.0) -> None:
        """Stop an expiry loop run as ``expiry`` and close the Redis client."""
        self.stop_expiring()
        try:
            await asyncio.wait_for(asyncio.shield(expiry), timeout_s)
        except TimeoutError:
            expiry.cancel()
        await self.client.aclose()


def build_app(ctx: ServiceContext, controller: Controller) -> web.Application:
    settings = ctx.settings
    app = observability_app(ctx)
    token = settings.control_token

    def error(status: int, message: str) -> web.Response:
        REQUESTS.labels("rejected" if status < 500 else "error").inc()
        return web.json_response({"error": message}, status=status)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method != "GET" and token:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error(401, "this control API needs 'Authorization: Bearer <token>'")
        try:
            response: web.StreamResponse = await handler(request)
        except RedisError as e:
            return error(503, f"the fault store (Redis) is unreachable: {e}")
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return error(e.status, f"{e.reason}: {request.method} {request.path}; the API is "
                                   "POST/GET /faults, DELETE /faults/{id}, POST /faults/reset")
        if response.status < 400:
            REQUESTS.labels("ok").inc()
        return response

    async def add(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "body is not valid JSON; send {type, target, duration_s, params}")
        try:
            fault = parse_fault_request(body, settings,
                                        bool(await controller.client.exists(PARTITIONER_KEY)))
        except FaultRequestError as e:
            return error(400, str(e))
        if fault.type in CRASH_FAULTS and not await controller.client.exists(SUPERVISOR_KEY):
            return error(409, f"{fault.type} is carried out by the supervisor of 'dnsrace up' "
                              "(or 'dnsrace run'), and none is running: under 'honcho start' "
                              "there is none; restart the cluster with 'dnsrace up'")
        await controller.start(fault)
        return web.json_response(fault_view(fault), status=201)

    async def listing(_: web.Request) -> web.Response:
        now = WALL_CLOCK.now_ms()
        active = [fault_view(f) for f in await controller.book.all() if f.active(now)]
        return web.json_response({"faults": active})

    async def remove(request: web.Request) -> web.Response:
        fault = await controller.end(request.match_info["id"], "removed")
        if fault is None:
            return error(404, f"no active fault {request.match_info['id']!r}")
        return web.json_response(fault_view(fault))

    async def reset(_: web.Request) -> web.Response:
        ended = [await controller.end(f.id, "reset") for f in await controller.book.all()]
        return web.json_response({"ended": [fault_view(f) for f in ended if f is not None]})

    app.middlewares.append(guard)
    app.router.add_post("/faults", add)
    app.router.add_get("/faults", listing)
    app.router.add_delete("/faults/{id}", remove)
    app.router.add_post("/faults/reset", reset)
    return app


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    loopback = settings.control_host in ("127.0.0.1", "::1", "localhost")
    if not loopback and not settings.control_token:
        raise ConfigError("DNSRACE_CONTROL_HOST is not loopback: set DNSRACE_CONTROL_TOKEN too")
    controller = Controller(ctx)
    runner = await start_site(build_app(ctx, controller), settings.control_host,
                              settings.control_port)
    try:
        async with supervised() as tasks:
            tasks.create_task(controller.expire_forever(), name="fault-expiry")
            ctx.ready = True
            await ctx.stopping.wait()
            controller.stop_expiring()
    finally:
        await runner.cleanup()
        await controller.client.aclose()
