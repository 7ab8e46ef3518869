"""A fleet of virtual clients, multiplexed on one event loop.

Each virtual client has what a real SDK client host has: its own stub cache (positive TTL and
RFC 2308 negative caching, :class:`loadgen.resolver.StubResolver`), its own choice among an
answer's addresses (drawn at random, kept while the answer lists it), connection reuse (one
pooled aiohttp session is shared by the process: keep-alive connections per address, as an
SDK's pool, at the cost of one session instead of N) and the SDKs' standard retry mode
(:mod:`loadgen.retry`; a retry picks another address when the answer has one).

The open model is kept: the fleet's arrival rate is the schedule's, each arrival goes to a
client drawn at random, and latency counts from the arrival's intended send time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from loadgen.metrics import FLEET_CLIENTS, FLEET_FAILING, RETRIES
from loadgen.outcome import Outcome
from loadgen.resolver import Resolution, StubResolver
from loadgen.retry import StandardRetry
from services.core.population import Population

Send = Callable[[str, int], Awaitable[Outcome]]
"""Send request ``seq`` to one address; its outcome."""
Resolve = Callable[[StubResolver, str], Awaitable[Resolution]]


@dataclass
class VirtualClient:
    index: int
    resolver: StubResolver
    rng: random.Random
    preferred: dict[str, str] = field(default_factory=dict)
    """Per name, the address this client is using."""

    def pick(self, name: str, addresses: tuple[str, ...], avoid: str | None = None) -> str:
        """The address to call: the one in use while the answer lists it, else one at random;
        with ``avoid`` (a retry), another one if the answer has another."""
        current = self.preferred.get(name)
        if avoid is None and current in addresses:
            return current
        choices = [a for a in addresses if a != avoid] or list(addresses)
        chosen = self.rng.choice(choices)
        self.preferred[name] = chosen
        return chosen


class Fleet:
    """N virtual clients with their caches and retries, and the population they form."""

    def __init__(self, clients: int, dns_host: str, dns_port: int, *, seed: int | None = None,
                 dns_timeout_s: float = 1.0, retry: StandardRetry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
            raise ValueError(f"the fleet needs at least 1 client, got {clients!r}")
        self.rng = random.Random(seed)
        self.clock = clock
        self.retry = retry if retry is not None else StandardRetry.seeded(self.rng)
        self.clients = [
            VirtualClient(i, StubResolver(dns_host, dns_port, timeout_s=dns_timeout_s,
                                          clock=clock), random.Random(self.rng.random()))
            for i in range(clients)
        ]
        self.population = Population(clients)
        self.attempts = 0
        self.retries = 0
        FLEET_CLIENTS.set(clients)
        FLEET_FAILING.set(0)

    def choose(self) -> VirtualClient:
        return self.clients[self.rng.randrange(len(self.clients))]

    async def call(self, client: VirtualClient, name: str, seq: int, send: Send,
                   on_resolution: Callable[[Resolution], None] | None = None) -> Outcome:
        """One request by ``client`` with the standard retries; the population notes it."""
        attempt = 0
        last_address: str | None = None
        while True:
            attempt += 1
            self.attempts += 1
            resolution = await client.resolver.resolve(name)
            if on_resolution is not None:
                on_resolution(resolution)
            if resolution.outcome is not Outcome.OK or not resolution.addresses:
                outcome = resolution.outcome
            else:
                last_address = client.pick(name, resolution.addresses,
                                           avoid=last_address if attempt > 1 else None)
                outcome = await send(last_address, seq)
            if not self.retry.should_retry(outcome, attempt):
                break
            self.retries += 1
            RETRIES.inc()
            await asyncio.sleep(self.retry.delay(attempt))
        self.population.record(client.index, self.clock(), outcome is not Outcome.OK)
        FLEET_FAILING.set(len(self.population.failing))
        return outcome

    async def aclose(self) -> None:
        await asyncio.gather(*(c.resolver.aclose() for c in self.clients))
