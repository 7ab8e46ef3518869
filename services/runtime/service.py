"""What every dnsrace process shares: logging, Redis client, /metrics + /healthz, shutdown.

A service is an ``async def main(ctx: ServiceContext)`` that runs until ``ctx.stopping`` is
set. :func:`run_service` gives it uvloop, a SIGTERM/SIGINT handler and an orderly stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import uvloop
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Info,
    disable_created_metrics,
    generate_latest,
)
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.config import ConfigError, Settings
from services.core.backoff import RetryBackoff
from services.errors import DnsraceError

log = logging.getLogger(__name__)

VERSION = "0.1.0"
generation_var: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "generation", default=None
)
# No ``*_created`` series: Prometheus stores each as a gauge of its own, doubling the series.
disable_created_metrics()
BUILD_INFO = Info("dnsrace_build", "Version, role and enactor mode of this dnsrace process")


class _ContextFilter(logging.Filter):
    def __init__(self, process: str, az: str | None) -> None:
        super().__init__()
        self.process_name = process
        self.az = az or "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.process_name
        record.az = self.az
        generation = generation_var.get()
        record.generation = "-" if generation is None else generation
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({
            "ts": round(record.created, 3),
            "level": record.levelname,
            "process": getattr(record, "service", "-"),
            "az": getattr(record, "az", "-"),
            "generation": getattr(record, "generation", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        })


def configure_logging(settings: Settings, process: str, az: str | None = None) -> None:
    """The one place logging is configured: process, AZ and plan generation on every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(process, az))
    if settings.log_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-5s [%(service)s az=%(az)s gen=%(generation)s] %(message)s"
        ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


REDIS_CONNECT_TIMEOUT_S = 2.0
"""Connecting to Redis, and closing a connection to it: without a bound, redis-py's close
waits for the socket without end."""
REDIS_RECONNECT = RetryBackoff(base_s=0.04, cap_s=1.0, jitter=0)
"""How a client waits between reconnects: 0.04, 0.08, ... 1 s, about 16 s over 20 retries."""


class PolicyBackoff(AbstractBackoff):
    """redis-py's back-off interface over our :class:`RetryBackoff` policy."""

    def __init__(self, policy: RetryBackoff) -> None:
        self.policy = policy

    def compute(self, failures: int) -> float:
        return self.policy.delay(max(1, failures))


def redis_client(settings: Settings, retries: int = 20) -> aioredis.Redis:
    """A client that rides out a Redis restart: reconnects with capped exponential back-off.

    Services keep the default (about 15 s of retrying); a command-line tool asks for a few
    retries so that a cluster that is not up is reported at once.
    """
    return aioredis.Redis.from_url(
        settings.effective_redis_url,
        decode_responses=True,
        retry=Retry(PolicyBackoff(REDIS_RECONNECT), retries=retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        health_check_interval=5,
    )


@dataclass
class ServiceContext:
    settings: Settings
    process: str
    az: str | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    started: float = field(default_factory=time.monotonic)


HealthCheck = Callable[[], Awaitable[bool]]


def observability_app(ctx: ServiceContext, health: HealthCheck | None = None) -> web.Application:
    """``/metrics`` in Prometheus text format and ``/healthz`` (200 once ready and healthy)."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ok = ctx.ready and (health is None or await health())
        body = {"process": ctx.process, "az": ctx.az, "ok": ok,
                "uptime_s": round(time.monotonic() - ctx.started, 3)}
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


class PortInUse(DnsraceError, RuntimeError):
    """A port this process must listen on is taken (most often: another cluster is up)."""


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as e:
        await runner.cleanup()
        raise PortInUse(f"cannot listen on {host}:{port} ({e.strerror}); is another dnsrace "
                        "cluster running? Stop it, or move this one with DNSRACE_*_PORT "
                        "settings ('dnsrace config')") from e
    return runner


ServiceMain = Callable[[ServiceContext], Awaitable[None]]
Job = Coroutine[Any, Any, None]


@contextlib.asynccontextmanager
async def supervised() -> AsyncIterator[asyncio.TaskGroup]:
    """A TaskGroup whose one failure is raised as itself, not as an ExceptionGroup of one.

    Every task created in it is awaited before the block ends; the first to fail cancels the
    others and the block (several failing at once raise an ExceptionGroup).
    """
    failed: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except ExceptionGroup as errors:
        failed = errors.exceptions[0] if len(errors.exceptions) == 1 else errors
    if failed is not None:
        raise failed  # outside the handler: the error, not "during handling of the group"


async def run_until_stopped(ctx: ServiceContext, *jobs: Job) -> None:
    """Run jobs in a task group until ``ctx.stopping`` is set, then cancel them.

    A job that fails cancels the others and its error is raised here; a job that returns is
    done and the others go on.
    """
    async with supervised() as group:
        tasks = [group.create_task(job) for job in jobs]
        await ctx.stopping.wait()
        for task in tasks:
            task.cancel()


def run_service(main: ServiceMain, settings: Settings, process: str, az: str | None = None,
                stop_timeout_s: float = 5.0) -> int:
    """Run one service under uvloop until SIGTERM/SIGINT; return the process exit code.

    The service runs in this task, not in one fired beside it: SIGTERM sets ``ctx.stopping``
    and gives it ``stop_timeout_s`` to return, after which it is cancelled.
    """
    configure_logging(settings, process, az)
    BUILD_INFO.info({"version": VERSION, "role": process, "mode": settings.mode})

    async def supervise() -> int:
        ctx = ServiceContext(settings, process, az)
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(None)

        def stop() -> None:
            if not ctx.stopping.is_set():
                log.info("stopping")
                ctx.stopping.set()
                deadline.reschedule(loop.time() + stop_timeout_s)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        try:
            async with deadline:
                await main(ctx)
        except TimeoutError as e:
            if not deadline.expired():
                log.error("%s failed", process, exc_info=e)
                return 1
            log.warning("did not stop within %.1f s; cancelled", stop_timeout_s)
        except PortInUse as e:
            log.error("%s", e)
            return 2
        except Exception as e:
            log.error("%s failed", process, exc_info=e)
            return 1
        else:
            log.info("stopped")
        return 0

    try:
        return uvloop.run(supervise())
    except ConfigError as e:
        log.error("%s", e)
        return 2
