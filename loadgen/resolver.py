"""A small asynchronous stub resolver with a cache, as a client host would have.

It asks one server (``dns_host:dns_port``) for A records over UDP, repeats the question over
TCP when the answer is truncated, and caches answers: positive ones for their TTL, negative
ones (NXDOMAIN, NODATA) for the RFC 2308 negative TTL (see :mod:`loadgen.answers`).  Concurrent
look-ups of a name share one query.  dnslib is used only to encode and decode messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from dnslib import EDNS0, DNSError, DNSRecord

from loadgen.answers import Answer, interpret, matches
from loadgen.metrics import DNS_BAD_RESPONSES, DNS_QUERIES, STALE_ANSWERS
from loadgen.outcome import Outcome
from services.errors import DnsraceError

log = logging.getLogger(__name__)

Clock = Callable[[], float]


EDNS_UDP_SIZE = 1232
"""Our advertised UDP size (the DNS flag day 2020 value); the server adds its generation."""


class BadResponse(DnsraceError):
    """A TCP response that does not answer the question asked."""


@dataclass(frozen=True)
class Resolution:
    outcome: Outcome
    addresses: tuple[str, ...] = ()
    cached: bool = False
    generation: int | None = None


@dataclass(frozen=True)
class _Entry:
    answer: Answer
    expires: float


class _UdpExchange(asyncio.DatagramProtocol):
    """One question over a connected UDP socket; datagrams that do not answer it are ignored."""

    def __init__(self, query: DNSRecord, done: asyncio.Future[DNSRecord]) -> None:
        self.query = query
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        if self.done.done():
            return
        try:
            response = DNSRecord.parse(data)
        except Exception:  # dnslib raises more than DNSError on junk; a stray datagram is no error
            DNS_BAD_RESPONSES.inc()
            return
        if matches(response, self.query):
            self.done.set_result(response)
        else:
            DNS_BAD_RESPONSES.inc()

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("UDP socket closed"))


class StubResolver:
    """Resolves names to IPv4 addresses through one DNS server, with a positive/negative cache."""

    def __init__(self, host: str, port: int, timeout_s: float = 1.0,
                 clock: Clock = time.monotonic, cache: bool = True) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.clock = clock
        self.use_cache = cache
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Answer]] = {}
        self.newest_seen: dict[str, int] = {}
        """Per name, the newest plan generation an answer has named (to see stale answers)."""
        self.stale_answers = 0

    async def resolve(self, name: str) -> Resolution:
        key = name.rstrip(".").lower()
        entry = self._cache.get(key)
        if entry is not None:
            if self.clock() < entry.expires:
                return Resolution(entry.answer.outcome, entry.answer.addresses, cached=True,
                                  generation=entry.answer.generation)
            del self._cache[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._lookup(key), name=f"dns:{key}")
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        answer = await asyncio.shield(task)
        return Resolution(answer.outcome, answer.addresses, generation=answer.generation)

    async def aclose(self) -> None:
        """Cancel look-ups still in flight (nobody is waiting for them any more)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _lookup(self, name: str) -> Answer:
        answer = await self.query(name)
        if self.use_cache and answer.cache_ttl_s:
            self._cache[name] = _Entry(answer, self.clock() + answer.cache_ttl_s)
        return answer

    async def query(self, name: str) -> Answer:
        """Ask the server once (UDP, then TCP if truncated), without the cache."""
        query = DNSRecord.question(name, "A")
        query.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE))
        transport = "udp"
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._udp(query)
                if response.header.tc:
                    transport = "tcp"
                    response = await self._tcp(query)
        except TimeoutError:
            answer = Answer(Outcome.DNS_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError) as e:
            # ICMP port unreachable, connection refused or reset: no server could be reached.
            log.debug("DNS %s query for %s failed: %s", transport, name, e)
            answer = Answer(Outcome.DNS_TIMEOUT)
        except (DNSError, BadResponse) as e:
            log.debug("unusable DNS %s answer for %s: %s", transport, name, e)
            DNS_BAD_RESPONSES.inc()
            answer = Answer(Outcome.DNS_SERVFAIL)
        else:
            answer = interpret(response, name)
            self._note_generation(name.rstrip(".").lower(), answer.generation)
        DNS_QUERIES.labels(transport, answer.outcome).inc()
        return answer

    def _note_generation(self, name: str, generation: int | None) -> None:
        """Count an answer naming an older plan than one already seen for the name (I2)."""
        if generation is None:
            return
        newest = self.newest_seen.get(name, 0)
        if generation < newest:
            self.stale_answers += 1
            STALE_ANSWERS.inc()
        else:
            self.newest_seen[name] = generation

    async def _udp(self, query: DNSRecord) -> DNSRecord:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[DNSRecord] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpExchange(query, done), remote_addr=(self.host, self.port),
        )
        try:
            transport.sendto(query.pack())
            return await done
        finally:
            transport.close()

    async def _tcp(self, query: DNSRecord) -> DNSRecord:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            data = query.pack()
            writer.write(len(data).to_bytes(2, "big") + data)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(2), "big")
            body = await reader.readexactly(size)
        finally:
            writer.close()
        try:
            response = DNSRecord.parse(body)
        except Exception as e:  # dnslib raises more than DNSError on junk
            raise BadResponse(f"undecodable TCP answer: {e}") from e
        if not matches(response, query):
            raise BadResponse(f"TCP answer does not match question {query.q.qname}")
        return response
