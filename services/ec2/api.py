"""``ec2_api``: a RunInstances-like HTTP JSON API in front of the DWFM hosts.

``POST /RunInstances`` with ``{"Placement": {"AvailabilityZone": "use1-az1"}}`` (or ``{}``)
asks the DWFM hosts, in random order, to place one instance on a droplet whose lease is held
and that has room. The first that can answers; the instance gets an id, is appended to the
launch stream (:mod:`services.store.launches`) and returned as ``{"Instances": [...]}``.

- no host can place it: ``InsufficientInstanceCapacity`` (500), as from 11:48 PM PDT;
- under ``queue_throttle``, while Network Manager's backlog is longer than
  ``ec2_netmgr_backlog_limit``, or over the operators' launch rate (``POST /ec2/throttle``):
  ``RequestLimitExceeded`` (503), as launches answered after 4:14 AM PDT;
- a body that is not a RunInstances request: ``InvalidParameterValue`` (400).

Served on the process's /metrics port (``metrics_port("ec2_api")``).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import Counter
from redis.exceptions import RedisError

from services.config import Settings
from services.core import launch
from services.core.clock import Clock
from services.core.names import AZS
from services.ec2.work import operator_rate
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import (
    ServiceContext,
    observability_app,
    redis_client,
    start_site,
)
from services.store import launches
from services.store.launches import Launch, LaunchRecordError

log = logging.getLogger(__name__)

ANSWERS = Counter(
    "dnsrace_ec2_api_requests", "RunInstances requests ec2_api answered, by outcome", ["outcome"]
)
for _outcome in launch.LaunchOutcome:
    if _outcome not in (launch.LaunchOutcome.CONNECT_ERROR, launch.LaunchOutcome.TIMEOUT):
        ANSWERS.labels(_outcome.value)

Answer = tuple[int, dict[str, Any]]


class LaunchRate:
    """The operators' limit on launches per second (a token bucket; ``None``: off)."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self.tokens = 0.0
        self.at_s = 0.0

    def set(self, rate: float | None, now_s: float) -> None:
        if rate is not None and not rate > 0:
            raise ValueError("a launch rate must be > 0 per second, or null for off")
        self.rate, self.tokens, self.at_s = rate, 0.0, now_s

    def allows(self, now_s: float) -> bool:
        if self.rate is None:
            return True
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now_s - self.at_s) * self.rate)
        self.at_s = now_s
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def requested_az(body: object) -> str | None:
    """The AZ a RunInstances body asks for (None: any); ValueError if it is not one."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    placement = body.get("Placement", {})
    if not isinstance(placement, dict):
        raise ValueError("Placement must be an object")
    az = placement.get("AvailabilityZone")
    if az is not None and az not in AZS:
        raise ValueError(f"AvailabilityZone {az!r} is not one of {', '.join(AZS)}")
    return az


class Ec2Api:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        redis: Any,
        clock: Clock = WALL_CLOCK,
        hosts: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.redis = redis
        self.clock = clock
        self.rate = LaunchRate()
        self.hosts = hosts or [
            f"http://127.0.0.1:{settings.metrics_port('dwfm', i)}/ec2/place"
            for i in range(settings.dwfm_hosts)
        ]
        """Each DWFM host's placement URL."""

    def now_s(self) -> float:
        return self.clock.now_ms() / 1000

    async def throttled(self) -> str | None:
        """Why this launch is refused with RequestLimitExceeded, or None."""
        if not self.rate.allows(self.now_s()):
            return f"the operators limit launches to {self.rate.rate:g} per second"
        if "queue_throttle" not in self.settings.active_protections:
            return None
        try:
            backlog = await launches.netmgr_backlog(self.redis)
        except (RedisError, LaunchRecordError) as e:
            log.warning("Network Manager's backlog unreadable (%s); taken as 0", e)
            return None
        limit = self.settings.ec2_netmgr_backlog_limit
        if backlog > limit:
            return f"Network Manager's backlog is {backlog} (limit {limit})"
        return None

    async def ask(self, url: str, az: str | None) -> dict[str, Any] | None:
        try:
            async with self.session.post(
                url, json={"az": az}, timeout=aiohttp.ClientTimeout(total=1.0)
            ) as r:
                answer: dict[str, Any] = await r.json()
                return answer if r.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.debug("placement on %s failed: %s", url, e)
            return None

    async def run_instances(self, body: object) -> Answer:
        try:
            az = requested_az(body)
        except ValueError as e:
            return self.error(launch.INVALID_PARAMETER, str(e), launch.LaunchOutcome.ERROR)
        why = await self.throttled()
        if why is not None:
            return self.error(
                launch.REQUEST_LIMIT_EXCEEDED, why, launch.LaunchOutcome.REQUEST_LIMIT_EXCEEDED
            )
        for url in random.sample(self.hosts, len(self.hosts)):
            placed = await self.ask(url, az)
            if placed is None:
                continue
            record = Launch(
                f"i-{secrets.token_hex(9)[:17]}",
                str(placed["az"]),
                str(placed["droplet"]),
                self.clock.now_ms(),
            )
            try:
                await launches.append_launch(self.redis, record)
            except RedisError as e:
                return self.error(
                    launch.INTERNAL_ERROR, f"launch not recorded: {e}", launch.LaunchOutcome.ERROR
                )
            ANSWERS.labels(launch.LaunchOutcome.OK.value).inc()
            return 200, {
                "Instances": [
                    {
                        "InstanceId": record.instance_id,
                        "DropletId": record.droplet,
                        "Placement": {"AvailabilityZone": record.az},
                        "State": {"Name": "pending"},
                    }
                ]
            }
        where = f" in {az}" if az else ""
        return self.error(
            launch.INSUFFICIENT_CAPACITY,
            f"no droplet with a lease and room{where}",
            launch.LaunchOutcome.INSUFFICIENT_CAPACITY,
        )

    def error(self, code: str, message: str, outcome: launch.LaunchOutcome) -> Answer:
        ANSWERS.labels(outcome.value).inc()
        return launch.STATUS[code], launch.error_body(code, message)


def routes(app: web.Application, api: Ec2Api) -> None:
    async def run_instances(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: object = json.loads(raw or b"{}")
        except ValueError:
            body = None
        status, answer = await api.run_instances(body)
        return web.json_response(answer, status=status)

    async def throttle(request: web.Request) -> web.Response:
        try:
            rate = operator_rate(await request.json())
            api.rate.set(rate, api.now_s())
        except (ValueError, KeyError, TypeError) as e:
            return web.json_response({"error": f"bad launch throttle: {e}"}, status=400)
        log.info("operators set the launch rate to %s", rate)
        return web.json_response({"host": "ec2_api", "rate": api.rate.rate})

    app.router.add_post(launch.RUN_INSTANCES_PATH, run_instances)
    app.router.add_post("/ec2/throttle", throttle)


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    redis = redis_client(settings)
    site: web.AppRunner | None = None
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            api = Ec2Api(settings, session, redis)
            app = observability_app(ctx)
            routes(app, api)
            site = await start_site(app, "127.0.0.1", settings.metrics_port("ec2_api"))
            log.info(
                "ec2_api on port %d, %d DWFM hosts",
                settings.metrics_port("ec2_api"),
                len(api.hosts),
            )
            ctx.ready = True
            await ctx.stopping.wait()
    finally:
        ctx.ready = False
        await redis.aclose()
        if site is not None:
            await site.cleanup()
