"""Launch load: RunInstances calls to ec2_api at a constant rate (open model), by outcome.

One launch at each intended time, whatever earlier ones are doing, over the three AZs in
turn; at most ``max_in_flight`` outstanding (more are dropped and counted as errors).
Outcomes are counted in ``dnsrace_ec2_launches_total{outcome}`` and returned.

With ``ec2_launch_retry_rate`` above 0 the load behaves as an auto-scaling group short of its
desired capacity: a launch that failed stays *pending* (``dnsrace_ec2_launches_pending``) and is
retried at up to that rate besides the steady launches, so the launches refused while leases
were lost come back as a surge once capacity returns (at most :data:`MAX_PENDING` wait).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

import aiohttp

from loadgen.metrics import LAUNCHES, LAUNCHES_PENDING
from loadgen.pacing import arrivals
from services.config import Settings
from services.core.launch import RUN_INSTANCES_PATH, LaunchOutcome, outcome_of
from services.core.names import AZS

log = logging.getLogger(__name__)

MAX_PENDING = 2000
"""Failed launches kept for retry at most (the group's shortfall it remembers)."""


async def launch_once(
    session: aiohttp.ClientSession, url: str, az: str, timeout_s: float = 2.0
) -> LaunchOutcome:
    """One RunInstances call and how it ended."""
    body = {"Placement": {"AvailabilityZone": az}, "MinCount": 1, "MaxCount": 1}
    try:
        async with session.post(
            url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as r:
            raw = await r.read()
            status = r.status
    except TimeoutError:
        return LaunchOutcome.TIMEOUT
    except aiohttp.ClientError:
        return LaunchOutcome.CONNECT_ERROR
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    return outcome_of(status, answer)


async def run_launches(
    settings: Settings, stop: asyncio.Event, rate: float | None = None, max_in_flight: int = 64
) -> Counter[LaunchOutcome]:
    """Launch at ``rate`` per second (default ``ec2_launch_rate``) until ``stop`` is set."""
    rate = settings.ec2_launch_rate if rate is None else rate
    counts: Counter[LaunchOutcome] = Counter()
    if rate <= 0:
        return counts
    url = f"http://127.0.0.1:{settings.metrics_port('ec2_api')}{RUN_INSTANCES_PATH}"
    in_flight: set[asyncio.Task[None]] = set()
    retry_rate = settings.ec2_launch_retry_rate
    pending: list[str] = []  # AZs of failed launches waiting for a retry

    async def one(az: str) -> None:
        outcome = await launch_once(session, url, az)
        counts[outcome] += 1
        LAUNCHES.labels(outcome.value).inc()
        if outcome is not LaunchOutcome.OK and retry_rate > 0 and len(pending) < MAX_PENDING:
            pending.append(az)
        LAUNCHES_PENDING.set(len(pending))

    async def retrying() -> None:
        while True:
            await asyncio.sleep(1.0 / retry_rate)
            if pending and len(in_flight) < max_in_flight:
                task = asyncio.create_task(one(pending.pop(0)))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                LAUNCHES_PENDING.set(len(pending))

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_in_flight)
    ) as session:
        retries = asyncio.create_task(retrying()) if retry_rate > 0 else None
        try:
            async for k in arrivals(rate, stop):
                if len(in_flight) >= max_in_flight:
                    counts[LaunchOutcome.ERROR] += 1
                    LAUNCHES.labels(LaunchOutcome.ERROR.value).inc()
                else:
                    task = asyncio.create_task(one(AZS[k % len(AZS)]))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
        finally:
            if retries is not None:
                retries.cancel()
                await asyncio.gather(retries, return_exceptions=True)
            for task in list(in_flight):
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
    return counts
