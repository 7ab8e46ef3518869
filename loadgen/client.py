"""The load clients: an open-model request stream that resolves the name, then calls DynamoDB.

Arrivals follow :mod:`loadgen.schedule` (a linear ramp to a constant rate) and are sent at their
intended times whatever earlier requests are doing.  Latency is measured from the intended send
time, so a stalled server shows as latency instead of silently slowing the load (no coordinated
omission).  Arrivals that find ``max_in_flight`` requests outstanding are dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Literal

import aiohttp
from dnslib import DNSLabel, DNSRecord

from loadgen.fleet import Fleet
from loadgen.metrics import (
    DROPPED,
    ENDPOINT_REQUESTS,
    IN_FLIGHT,
    LATE,
    REQUEST_SECONDS,
    REQUESTS,
    RESOLUTION_SECONDS,
    RESOLUTIONS,
    TARGET_RATE,
)
from loadgen.outcome import Outcome
from loadgen.resolver import Resolution, StubResolver
from loadgen.schedule import LATE_THRESHOLD_S, arrival_time, rate_at
from loadgen.stats import LatencyHistogram, LoadSummary
from loadgen.targets import NameMix, other_endpoints
from services.config import Settings
from services.core.names import (
    DEFAULT_HASH_KEY,
    DEFAULT_TABLE,
    REGIONAL,
    TARGET_PREFIX,
    endpoint_label,
)

log = logging.getLogger(__name__)

Operation = Literal["get", "mixed"]
"""``get``: every request is a GetItem; ``mixed``: PutItem and GetItem alternate."""
KEYS = 1000
"""Requests cycle over this many item keys, so the fleet's memory stays bounded."""
_LONG_WAIT_S = 0.05
_HALF_TICK_S = 0.0005
"""Event-loop timers are 1 ms coarse (uvloop rounds to whole ms, so a shorter sleep would
spin): an arrival due within half a tick is sent now, so sends land within about ±0.5 ms."""
FLEET_POOL_PER_HOST = 50
"""The fleet's connections per load balancer address at most (botocore's default pool: 10 per
client; here one pool serves every virtual client): a burst waits for a kept-alive connection
instead of opening hundreds of new ones, which put the process behind for good."""
_now = time.monotonic
"""The run's clock; not ``loop.time()``, which uvloop keeps in whole milliseconds."""


def validate_names(names: Sequence[str]) -> tuple[str, ...]:
    if not names:
        raise ValueError("give at least one name to resolve")
    for name in names:
        try:
            DNSRecord.question(DNSLabel(name), "A").pack()
        except Exception as e:
            raise ValueError(f"{name!r} is not a usable DNS name: {e}") from e
    return tuple(names)


def request_for(seq: int, operation: Operation, table: str) -> tuple[str, bytes]:
    """The DynamoDB operation and JSON body of request number ``seq``."""
    key = {DEFAULT_HASH_KEY: {"S": f"k{seq % KEYS}"}}
    if operation == "mixed" and seq % 2 == 0:
        item = {**key, "seq": {"N": str(seq)}, "payload": {"S": "dnsrace"}}
        return "PutItem", json.dumps({"TableName": table, "Item": item}).encode()
    if operation == "mixed":
        key = {DEFAULT_HASH_KEY: {"S": f"k{(seq - 1) % KEYS}"}}
    return "GetItem", json.dumps({"TableName": table, "Key": key}).encode()


class LoadRun:
    """The state of one run: counters, latency histograms, the requests in flight."""

    def __init__(self, settings: Settings, mix: NameMix, resolver: StubResolver,
                 session: aiohttp.ClientSession, operation: Operation, table: str,
                 fleet: Fleet | None = None) -> None:
        self.settings = settings
        self.fleet = fleet
        self.mix = mix
        self.resolver = resolver
        self.session = session
        self.operation = operation
        self.table = table
        self.outcomes: collections.Counter[Outcome] = collections.Counter()
        self.latency = LatencyHistogram()
        self.latency_ok = LatencyHistogram()
        self.in_flight = 0
        self.sent = self.dropped = self.late = 0

    async def schedule(self, tasks: asyncio.TaskGroup, stop: asyncio.Event, rate: float,
                       ramp_s: float, duration_s: float, max_in_flight: int,
                       max_requests: int | None) -> float:
        """Send every arrival at its time until the end; return the seconds the run covered."""
        start = _now()
        end = duration_s if duration_s > 0 else math.inf
        k = 0
        last_send = 0.0
        while not stop.is_set() and (max_requests is None or k < max_requests):
            due = arrival_time(k, rate, ramp_s)
            now = _now() - start
            if due >= end:  # no arrival left: sit out the rest of the run
                await _wait(stop, end - now)
                break
            if due - now >= _HALF_TICK_S:
                TARGET_RATE.set(rate_at(now, rate, ramp_s))
                delay = min(due, end) - now
                if delay > _LONG_WAIT_S:
                    await _wait(stop, delay)
                else:
                    await asyncio.sleep(delay)
                continue
            if now - due > LATE_THRESHOLD_S:
                self.late += 1
                LATE.inc()
            if self.in_flight >= max_in_flight:
                self.dropped += 1
                DROPPED.inc()
            else:
                self._launch(tasks, k, start + due)
            last_send = now
            k += 1
        TARGET_RATE.set(0)
        if stop.is_set():
            return _now() - start
        # the schedule's span, stretched only if the scheduler fell behind it
        return max(last_send, min(arrival_time(k, rate, ramp_s), end))

    def _launch(self, tasks: asyncio.TaskGroup, seq: int, intended: float) -> None:
        self.sent += 1
        self.in_flight += 1
        IN_FLIGHT.inc()
        task = tasks.create_task(self.request(seq, intended))
        task.add_done_callback(self._finished)

    def _finished(self, _: asyncio.Task[None]) -> None:
        self.in_flight -= 1
        IN_FLIGHT.dec()

    async def request(self, seq: int, intended: float) -> None:
        """One request; its outcome and latency (from ``intended``) are recorded."""
        try:
            outcome = await self.call(seq)
        except Exception:  # one broken request must not end the run; it is logged and counted
            log.exception("request %d failed unexpectedly", seq)
            outcome = Outcome.HTTP_ERROR
        latency = _now() - intended
        self.outcomes[outcome] += 1
        self.latency.record(latency)
        if outcome is Outcome.OK:
            self.latency_ok.record(latency)
        REQUESTS.labels(outcome).inc()
        ENDPOINT_REQUESTS.labels(endpoint_label(self.mix.name_for(seq)), outcome).inc()
        REQUEST_SECONDS.observe(latency)

    async def call(self, seq: int) -> Outcome:
        name = self.mix.name_for(seq)
        if self.fleet is not None:
            return await self.fleet.call(self.fleet.choose(), name, seq, self.send,
                                         _count_resolution)
        started = _now()
        resolution = await self.resolver.resolve(name)
        RESOLUTION_SECONDS.observe(_now() - started)
        _count_resolution(resolution)
        if resolution.outcome is not Outcome.OK:
            return resolution.outcome
        return await self.send(resolution.addresses[0], seq)

    async def send(self, address: str, seq: int) -> Outcome:
        """Send request ``seq`` to the load balancer at ``address``."""
        operation, body = request_for(seq, self.operation, self.table)
        url = f"http://{address}:{self.settings.lb_port}/"
        headers = {"X-Amz-Target": TARGET_PREFIX + operation,
                   "Content-Type": "application/x-amz-json-1.0"}
        try:
            async with self.session.post(url, data=body, headers=headers) as response:
                await response.read()
                return Outcome.OK if response.status == 200 else Outcome.HTTP_ERROR
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            return Outcome.CONNECT_ERROR
        except TimeoutError:
            return Outcome.TIMEOUT
        except aiohttp.ClientError:
            return Outcome.HTTP_ERROR
        except OSError:
            return Outcome.CONNECT_ERROR

    def summary(self, peak_rate: float, duration_s: float) -> LoadSummary:
        return LoadSummary(
            names=self.mix.all_names, operation=self.operation, peak_rate_per_s=peak_rate,
            duration_s=duration_s, scheduled=self.sent + self.dropped, sent=self.sent,
            dropped=self.dropped, late=self.late,
            outcomes={str(o): self.outcomes.get(o, 0) for o in Outcome},
            latency=self.latency.summary(), latency_ok=self.latency_ok.summary(),
            clients=len(self.fleet.clients) if self.fleet else 0,
            retries=self.fleet.retries if self.fleet else 0,
            failing=self.fleet.population.outcome().as_json() if self.fleet else None,
        )


def _count_resolution(resolution: Resolution) -> None:
    RESOLUTIONS.labels(resolution.outcome).inc()


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    if timeout_s <= 0:
        return
    if math.isinf(timeout_s):
        await event.wait()
        return
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return


def client_session(max_in_flight: int, request_timeout_s: float,
                   per_host: int = 0) -> aiohttp.ClientSession:
    """One pooled session for a whole run: keep-alive connections, short timeouts; with
    ``per_host``, at most that many connections to one address (an SDK pool's size)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=per_host),
        timeout=aiohttp.ClientTimeout(total=request_timeout_s,
                                      sock_connect=min(1.0, request_timeout_s)),
        trust_env=False,
    )


async def run_load(
    settings: Settings,
    names: Sequence[str] = (REGIONAL,),
    *,
    rate: float | None = None,
    duration_s: float | None = None,
    ramp_s: float | None = None,
    max_in_flight: int | None = None,
    max_requests: int | None = None,
    operation: Operation = "get",
    table: str = DEFAULT_TABLE,
    dns_timeout_s: float = 1.0,
    request_timeout_s: float = 2.0,
    stop: asyncio.Event | None = None,
    clients: int | None = None,
    seed: int | None = None,
    other_share: float | None = None,
) -> LoadSummary:
    """Run the load until ``duration_s``, ``max_requests`` or ``stop``; return its summary.

    Settings give the defaults (``load_rate``, ``load_duration_s``, ``load_ramp_s``,
    ``load_max_in_flight``, ``load_other_share``) and where to find the DNS server
    (``dns_host``, ``dns_port``) and the load balancers (``lb_port``).  ``duration_s=0`` means
    until ``stop`` is set.
    """
    rate = settings.load_rate if rate is None else rate
    duration_s = settings.load_duration_s if duration_s is None else duration_s
    ramp_s = settings.load_ramp_s if ramp_s is None else ramp_s
    max_in_flight = settings.load_max_in_flight if max_in_flight is None else max_in_flight
    clients = settings.load_clients if clients is None else clients
    if rate < 0 or duration_s < 0 or ramp_s < 0 or max_in_flight < 1 or clients < 0:
        raise ValueError("rate, duration, ramp and clients must be >= 0 and max_in_flight >= 1")
    if duration_s == 0 and stop is None and max_requests is None:
        raise ValueError("an unbounded run needs a stop event, a duration or max_requests")
    share = settings.load_other_share if other_share is None else other_share
    mix = NameMix(validate_names(names), other_endpoints(settings.cells), share)
    stop = stop if stop is not None else asyncio.Event()
    # with the unbound tier, every client asks Unbound; else our server straight
    dns_host, dns_port = (("127.0.0.1", settings.resolver_port) if settings.resolver == "unbound"
                          else (settings.dns_host, settings.dns_port))
    resolver = StubResolver(dns_host, dns_port, timeout_s=dns_timeout_s)
    fleet = (Fleet(clients, dns_host, dns_port, seed=seed,
                   dns_timeout_s=dns_timeout_s) if clients > 0 else None)
    log.info("load: %g req/s (ramp %g s) for %s on %s", rate, ramp_s,
             f"{duration_s:g} s" if duration_s else "ever", ", ".join(mix.names)
             + (f" and {share:.0%} on {len(mix.others)} other endpoints" if share else ""))
    per_host = FLEET_POOL_PER_HOST if fleet is not None else 0
    async with client_session(max_in_flight, request_timeout_s, per_host) as session:
        run = LoadRun(settings, mix, resolver, session, operation, table, fleet)
        try:
            async with asyncio.TaskGroup() as tasks:
                covered = await run.schedule(tasks, stop, rate, ramp_s, duration_s,
                                             max_in_flight, max_requests)
        finally:
            await resolver.aclose()
            if fleet is not None:
                await fleet.aclose()
    return run.summary(rate, covered)
