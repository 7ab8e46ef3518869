"""The stub resolver against a scripted DNS responder on real loopback UDP and TCP sockets.

:class:`ScriptedDNS` is a real server: each test gives it a function from (query, transport)
to a :class:`Reply`, and reads back the queries it received.  The resolver's clock is injected,
so cache expiry is tested without waiting for it.
"""

from __future__ import annotations

import asyncio
import time
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from dnslib import QTYPE, RCODE, RR, SOA, A, DNSRecord
from prometheus_client import REGISTRY

from loadgen.outcome import Outcome
from loadgen.resolver import StubResolver
from services.runtime.ports import free_port

NAME = "dynamodb.us-east-1.amazonaws.com"
ZONE = "us-east-1.amazonaws.com"


@dataclass
class Reply:
    """What the responder sends back: raw datagrams / TCP messages, after ``delay_s``."""

    messages: list[bytes] = field(default_factory=list)
    delay_s: float = 0.0


Script = Callable[[DNSRecord, str], Reply]


def answer(query: DNSRecord, *addresses: str, ttl: int = 5) -> Reply:
    response = query.reply()
    for address in addresses:
        response.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(address), ttl=ttl))
    return Reply([response.pack()])


def negative(query: DNSRecord, rcode: int = RCODE.NOERROR, soa_ttl: int | None = 30,
             minimum: int = 3) -> Reply:
    response = query.reply()
    response.header.rcode = rcode
    if soa_ttl is not None:
        response.add_auth(RR(ZONE, QTYPE.SOA, ttl=soa_ttl, rdata=SOA(
            "ns1." + ZONE, "hostmaster." + ZONE, (7, 60, 30, 600, minimum))))
    return Reply([response.pack()])


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: ScriptedDNS) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.handle(data, "udp")
        loop = asyncio.get_running_loop()
        for message in reply.messages:
            assert self.transport is not None
            loop.call_later(reply.delay_s, self.transport.sendto, message, addr)


class ScriptedDNS:
    """A DNS responder on 127.0.0.1 (UDP and TCP on one port) that answers as scripted."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.queries: list[tuple[str, str]] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def handle(self, data: bytes, transport: str) -> Reply:
        query = DNSRecord.parse(data)
        self.queries.append((transport, str(query.q.qname).rstrip(".")))
        return self.script(query, transport)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            reply = self.handle(await reader.readexactly(size), "tcp")
            await asyncio.sleep(reply.delay_s)  # the scripted server delay, not a wait
            for message in reply.messages:
                writer.write(len(message).to_bytes(2, "big") + message)
            await writer.drain()
        finally:
            writer.close()

    async def start(self) -> ScriptedDNS:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            port = free_port()
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", port)
            except OSError:
                continue
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=("127.0.0.1", port))
            except OSError:
                self._tcp.close()
                continue
            self.port = port
            return self
        raise OSError("no port free for both UDP and TCP")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


@pytest.fixture
async def dns() -> AsyncIterator[ScriptedDNS]:
    server = await ScriptedDNS(lambda q, _: answer(q, "127.0.77.1")).start()
    yield server
    await server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver_for(dns: ScriptedDNS, clock: FakeClock | None = None,
                 timeout_s: float = 1.0) -> StubResolver:
    return StubResolver("127.0.0.1", dns.port, timeout_s=timeout_s,
                        clock=clock if clock is not None else FakeClock())


async def test_answer_is_cached_for_its_ttl(dns: ScriptedDNS) -> None:
    dns.script = lambda q, _: answer(q, "127.0.77.1", "127.0.77.2", ttl=5)
    clock = FakeClock()
    resolver = resolver_for(dns, clock)
    first = await resolver.resolve(NAME)
    assert (first.outcome, first.addresses, first.cached) == (
        Outcome.OK, ("127.0.77.1", "127.0.77.2"), False)
    clock.now += 4.9
    again = await resolver.resolve(NAME + ".")
    assert (again.outcome, again.addresses, again.cached) == (
        Outcome.OK, ("127.0.77.1", "127.0.77.2"), True)
    assert len(dns.queries) == 1
    clock.now += 0.1
    dns.script = lambda q, _: answer(q, "127.0.77.3", ttl=5)
    fresh = await resolver.resolve(NAME)
    assert (fresh.addresses, fresh.cached) == (("127.0.77.3",), False)
    assert dns.queries == [("udp", NAME), ("udp", NAME)]


async def test_nodata_is_cached_negatively_until_the_soa_minimum_passes(dns: ScriptedDNS) -> None:
    """The outage's symptom: after the record is repaired, clients still see no address."""
    dns.script = lambda q, _: negative(q, soa_ttl=30, minimum=3)
    clock = FakeClock()
    resolver = resolver_for(dns, clock)
    assert (await resolver.resolve(NAME)).outcome is Outcome.DNS_NODATA
    dns.script = lambda q, _: answer(q, "127.0.77.1")  # the zone is repaired
    clock.now += 2.9
    still = await resolver.resolve(NAME)
    assert (still.outcome, still.cached) == (Outcome.DNS_NODATA, True)
    assert len(dns.queries) == 1
    clock.now += 0.1
    repaired = await resolver.resolve(NAME)
    assert (repaired.outcome, repaired.addresses) == (Outcome.OK, ("127.0.77.1",))
    assert len(dns.queries) == 2


async def test_nxdomain_is_cached_but_only_with_an_soa(dns: ScriptedDNS) -> None:
    clock = FakeClock()
    resolver = resolver_for(dns, clock)
    dns.script = lambda q, _: negative(q, RCODE.NXDOMAIN, soa_ttl=10, minimum=10)
    assert (await resolver.resolve(NAME)).outcome is Outcome.DNS_NXDOMAIN
    clock.now += 9
    assert (await resolver.resolve(NAME)).cached
    other = "gone." + ZONE
    dns.script = lambda q, _: negative(q, RCODE.NXDOMAIN, soa_ttl=None)
    assert (await resolver.resolve(other)).outcome is Outcome.DNS_NXDOMAIN
    assert (await resolver.resolve(other)).outcome is Outcome.DNS_NXDOMAIN
    assert [name for _, name in dns.queries] == [NAME, other, other]


@pytest.mark.parametrize("rcode", [RCODE.SERVFAIL, RCODE.REFUSED, RCODE.NOTIMP])
async def test_server_failures_are_servfail_and_not_cached(dns: ScriptedDNS, rcode: int) -> None:
    dns.script = lambda q, _: negative(q, rcode)
    resolver = resolver_for(dns)
    for _ in range(2):
        assert (await resolver.resolve(NAME)).outcome is Outcome.DNS_SERVFAIL
    assert len(dns.queries) == 2


async def test_silent_server_is_a_timeout_after_the_timeout(dns: ScriptedDNS) -> None:
    dns.script = lambda q, _: Reply()
    resolver = resolver_for(dns, timeout_s=0.3)
    started = time.monotonic()
    result = await resolver.resolve(NAME)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.DNS_TIMEOUT
    assert 0.29 <= elapsed < 0.8
    assert (await resolver.resolve(NAME)).outcome is Outcome.DNS_TIMEOUT
    assert len(dns.queries) == 2


async def test_no_server_at_all_fails_fast_as_timeout() -> None:
    resolver = StubResolver("127.0.0.1", free_port(), timeout_s=2.0)
    started = time.monotonic()
    result = await resolver.resolve(NAME)
    assert result.outcome is Outcome.DNS_TIMEOUT
    assert time.monotonic() - started < 1.0  # ICMP port unreachable ends it early


async def test_truncated_udp_answer_is_asked_again_over_tcp(dns: ScriptedDNS) -> None:
    many = [f"127.0.77.{i}" for i in range(1, 61)]

    def script(query: DNSRecord, transport: str) -> Reply:
        if transport == "udp":
            truncated = query.reply()
            truncated.header.tc = 1
            return Reply([truncated.pack()])
        return answer(query, *many)

    dns.script = script
    result = await resolver_for(dns).resolve(NAME)
    assert (result.outcome, result.addresses) == (Outcome.OK, tuple(many))
    assert dns.queries == [("udp", NAME), ("tcp", NAME)]


async def test_datagrams_that_do_not_answer_the_question_are_ignored(dns: ScriptedDNS) -> None:
    def script(query: DNSRecord, _: str) -> Reply:
        spoofed = DNSRecord.question(NAME, "A")
        spoofed.header.id = (query.header.id + 1) % 65536
        spoof = spoofed.reply()
        spoof.add_answer(RR(NAME, QTYPE.A, rdata=A("10.6.6.6"), ttl=300))
        return Reply([b"\x00junk", spoof.pack(), *answer(query, "127.0.77.9").messages])

    dns.script = script
    before = REGISTRY.get_sample_value("dnsrace_client_dns_bad_responses_total") or 0.0
    result = await resolver_for(dns).resolve(NAME)
    assert (result.outcome, result.addresses) == (Outcome.OK, ("127.0.77.9",))
    after = REGISTRY.get_sample_value("dnsrace_client_dns_bad_responses_total")
    assert after == before + 2


async def test_concurrent_lookups_of_one_name_share_one_query(dns: ScriptedDNS) -> None:
    dns.script = lambda q, _: Reply(answer(q, "127.0.77.5").messages, delay_s=0.1)
    resolver = resolver_for(dns)
    results = await asyncio.gather(*(resolver.resolve(NAME) for _ in range(50)))
    assert {r.addresses for r in results} == {("127.0.77.5",)}
    assert len(dns.queries) == 1
