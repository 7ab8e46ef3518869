"""Watch a running cluster the way a person would: ask DNS, read the clients' numbers.

The monitor polls the regional name like ``dig`` would (every ``dns_every_s``, no cache) and
scrapes every process's /metrics, keeps what it saw with timestamps, and can wait on a
condition over those observations with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from loadgen.outcome import Outcome
from loadgen.resolver import StubResolver
from services.config import Settings
from services.core import names
from services.runtime.scrape import Samples, metrics_urls, scrape

FAILURES = ("dns_nodata", "dns_nxdomain", "dns_timeout", "dns_servfail", "connect_error",
            "http_error", "timeout")


@dataclass(frozen=True)
class DnsSample:
    at: float
    outcome: str
    addresses: int
    generation: int | None = None

    @property
    def empty(self) -> bool:
        """NOERROR with no address: the October 2025 symptom (not a timeout or SERVFAIL)."""
        return self.outcome == Outcome.DNS_NODATA

    @property
    def unanswered(self) -> bool:
        """No usable answer in time (a timeout, SERVFAIL or a broken reply)."""
        return self.outcome in (Outcome.DNS_TIMEOUT, Outcome.DNS_SERVFAIL)


@dataclass(frozen=True)
class LoadSample:
    at: float
    requests: dict[str, float]
    rejected: dict[str, float]
    served_generation: float
    newest_generation: float
    client_stale: float = 0.0
    client_resolutions: float = 0.0
    latency_buckets: dict[str, float] = field(default_factory=dict)
    """The clients' request-latency histogram (le -> cumulative count), for percentiles."""
    fleet_clients: float = 0.0
    fleet_failing: float = 0.0
    """Virtual clients in the fleet, and those whose last request failed (every loadgen)."""
    resolver_nodata_from_cache: float = 0.0
    """Empty answers Unbound served from its cache (0 with the stub resolver)."""


@dataclass
class Monitor:
    settings: Settings
    name: str = names.REGIONAL
    dns_every_s: float = 0.2
    metrics_every_s: float = 0.5
    fleet_every_s: float = 0.2
    """With a client fleet, the load generators alone are read this often (the fleet's ramp)."""
    print_every_s: float = 1.0
    out: Callable[[str], None] = print
    label: str = ""
    started: float = field(default_factory=time.monotonic)
    dns: list[DnsSample] = field(default_factory=list)
    load: list[LoadSample] = field(default_factory=list)
    fleet: list[tuple[float, float]] = field(default_factory=list)
    """(time, share of the virtual clients failing) when every load generator answered."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _session: aiohttp.ClientSession | None = None
    resolver: StubResolver | None = None

    @property
    def stale_answers(self) -> int:
        """Answers DNS polling saw naming an older generation than one it had seen (I2)."""
        return self.resolver.stale_answers if self.resolver is not None else 0

    def now(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        self.out(f"+{self.now():5.1f}s  {self.label}>> {text}")

    async def __aenter__(self) -> Monitor:
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._poll_dns()),
                       asyncio.create_task(self._poll_metrics()),
                       asyncio.create_task(self._print())]
        if self.settings.load_clients:
            self._tasks.append(asyncio.create_task(self._poll_fleet()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _poll_dns(self) -> None:
        resolver = self.resolver = StubResolver(self.settings.dns_host, self.settings.dns_port,
                                                timeout_s=0.5, cache=False)
        while True:
            answer = await resolver.query(self.name)
            self.dns.append(DnsSample(self.now(), str(answer.outcome), len(answer.addresses),
                                      answer.generation))
            self._changed.set()
            await asyncio.sleep(self.dns_every_s)

    async def _poll_metrics(self) -> None:
        urls = list(metrics_urls(self.settings).values())
        assert self._session is not None
        while True:
            samples: Samples = await scrape(self._session, urls)
            self.load.append(LoadSample(
                self.now(),
                samples.by("dnsrace_client_requests_total", "outcome"),
                samples.by("dnsrace_enactor_batches_rejected_total", "reason"),
                samples.sum("dnsrace_dns_generation_served", endpoint="regional"),
                samples.sum("dnsrace_planner_newest_generation"),
                samples.sum("dnsrace_client_stale_answers_total"),
                samples.sum("dnsrace_client_resolutions_total"),
                samples.by("dnsrace_client_request_seconds_bucket", "le"),
                samples.sum("dnsrace_client_fleet_clients"),
                samples.sum("dnsrace_client_fleet_failing"),
                samples.sum("dnsrace_resolver_nodata_from_cache"),
            ))
            self._changed.set()
            await asyncio.sleep(self.metrics_every_s)

    async def _poll_fleet(self) -> None:
        urls = [url for name, url in metrics_urls(self.settings).items()
                if name.startswith("loadgen")]
        assert self._session is not None
        while True:
            samples = await scrape(self._session, urls, timeout_s=0.5)
            clients = samples.sum("dnsrace_client_fleet_clients")
            if clients == self.settings.load_clients:  # a copy that did not answer: skip
                self.fleet.append((self.now(), samples.sum("dnsrace_client_fleet_failing")
                                   / clients))
            await asyncio.sleep(self.fleet_every_s)

    def failure_ratio(self, window_s: float = 1.0, at: float | None = None) -> float | None:
        """Share of client requests that failed over the last ``window_s`` (None: no traffic)."""
        points = self.load if at is None else [p for p in self.load if p.at <= at]
        if len(points) < 2:
            return None
        last = points[-1]
        first = next((p for p in reversed(points) if last.at - p.at >= window_s), points[0])
        total = sum(last.requests.values()) - sum(first.requests.values())
        if total <= 0:
            return None
        failed = sum(last.requests.get(o, 0) - first.requests.get(o, 0) for o in FAILURES)
        return failed / total

    def request_rate(self, window_s: float = 1.0) -> float:
        if len(self.load) < 2:
            return 0.0
        last = self.load[-1]
        first = next((p for p in reversed(self.load) if last.at - p.at >= window_s),
                     self.load[0])
        span = last.at - first.at
        total = sum(last.requests.values()) - sum(first.requests.values())
        return total / span if span > 0 else 0.0

    def client_stale_answers(self) -> float:
        return self.load[-1].client_stale if self.load else 0.0

    def totals(self) -> tuple[dict[str, float], dict[str, float]]:
        if not self.load:
            return {}, {}
        return self.load[-1].requests, self.load[-1].rejected

    def fleet_history(self) -> list[tuple[float, float]]:
        """(time, share of the virtual clients failing): the load generators' own samples
        (every ``fleet_every_s``), else every metrics sample's."""
        if self.fleet:
            return list(self.fleet)
        return [(s.at, s.fleet_failing / s.fleet_clients) for s in self.load if s.fleet_clients]

    async def _print(self) -> None:
        while True:
            await asyncio.sleep(self.print_every_s)
            self.out(self.line())

    def line(self) -> str:
        dns = "-"
        if self.dns:
            d = self.dns[-1]
            dns = f"{d.addresses} addr" if d.addresses else d.outcome.upper()
        ratio = self.failure_ratio()
        fail = "  -  " if ratio is None else f"{ratio:6.1%}"
        served = newest = rejected = 0.0
        if self.load:
            last = self.load[-1]
            served, newest = last.served_generation, last.newest_generation
            rejected = sum(last.rejected.values())
        fleet = ""
        if self.load and self.load[-1].fleet_clients:
            last = self.load[-1]
            fleet = f" (fleet {last.fleet_failing / last.fleet_clients:6.1%} of clients)"
        return (f"+{self.now():5.1f}s  {self.label}dns {dns:<13} plan served {served:>4.0f} "
                f"newest {newest:>4.0f}  clients {self.request_rate():5.0f}/s failing {fail}"
                f"{fleet}  enactor batches rejected {rejected:.0f}")

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float,
                         what: str) -> float:
        """Wait until ``condition`` holds over the observations; return when it did."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what} did not happen within {timeout_s:.1f} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.now()

    def dns_empty(self) -> bool:
        return bool(self.dns) and self.dns[-1].empty

    def dns_answers(self) -> bool:
        return bool(self.dns) and self.dns[-1].addresses > 0

    def healthy(self) -> bool:
        """Healthy traffic: the name answers, no request failed over the last second, and no
        virtual client of a fleet will fail from a start-up answer it still holds.

        A client whose last answer was a negatively cached NXDOMAIN (the zone not yet written
        at start-up) fails until the entry expires and may send no request in a given second;
        at a low rate per client its next request may be many seconds away. So either no
        client's last request failed, or no request failed for the negative TTL (every entry
        cached by a failure has expired since)."""
        if not (self.dns_answers() and self.failure_ratio() == 0.0):
            return False
        last = self.load[-1]
        if not last.fleet_clients or last.fleet_failing == 0:
            return True
        return self.failure_free_for(max(1.0, float(self.settings.negative_ttl_s)))

    def failure_free_for(self, window_s: float) -> bool:
        """No client request failed over the last ``window_s`` (observed for that long)."""
        if not self.load:
            return False
        last = self.load[-1]
        first = next((p for p in reversed(self.load) if last.at - p.at >= window_s), None)
        if first is None:
            return False

        def failed(sample: LoadSample) -> float:
            return sum(sample.requests.get(o, 0) for o in FAILURES)

        return failed(last) == failed(first)

    def recovered(self) -> bool:
        ratio = self.failure_ratio()
        return self.dns_answers() and ratio is not None and ratio < 0.01

    def empty_samples(self, since: float = 0.0) -> int:
        """Polls answered NOERROR with no address."""
        return sum(1 for d in self.dns if d.at >= since and d.empty)

    def unanswered_samples(self, since: float = 0.0) -> int:
        """Polls that got no usable answer in time (counted apart from empty answers)."""
        return sum(1 for d in self.dns if d.at >= since and d.unanswered)
