"""UDP in batches (recvmmsg/sendmmsg) over real sockets: every datagram of a burst is answered
to its own sender, dropped queries do not shift the others' addresses, and the bytes are the
same as through the asyncio transport."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from dnslib import DNSRecord
from prometheus_client import REGISTRY

from dns_server import udp_batch
from dns_server.server import DnsServer
from services.config import load
from services.core import names
from services.core.records import Action, Change
from services.runtime.redis_server import EmbeddedRedis
from services.store.zone import ZoneStore, ensure_apex
from tests.test_dns_protocol import TREE1, commit, flip, query

pytestmark = pytest.mark.skipif(not udp_batch.available(),
                                reason="recvmmsg/sendmmsg are Linux system calls")

BURST_CLIENTS = 8
BURST_QUERIES = 50


async def _server(redis_server: EmbeddedRedis, zone: ZoneStore, batch: int,
                  host: str = "127.0.0.1", fast_path: bool = False) -> DnsServer:
    """A server on a free port; UDP read from Python unless ``fast_path`` (the C thread)."""
    await ensure_apex(zone, 5, 5)
    settings = load({"DNSRACE_DNS_UDP_BATCH": str(batch), "DNSRACE_DNS_HOST": host,
                     "DNSRACE_DNS_FAST_PATH": "1" if fast_path else "0"})
    server = DnsServer(settings, keys=zone.keys, redis_url=redis_server.url, port=0,
                       rng=random.Random(1))
    await server.start()
    await server.wait_for_serial(await zone.serial(), timeout_s=10)
    return server


@pytest.fixture
async def served(redis_server: EmbeddedRedis, zone: ZoneStore) -> AsyncIterator[ZoneStore]:
    await ensure_apex(zone, 5, 5)
    await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    yield zone


@contextmanager
def clients(count: int, family: socket.AddressFamily = socket.AF_INET,
            host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
            sock.settimeout(5.0)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _batches() -> tuple[float, float]:
    """recvmmsg calls that returned datagrams, and the datagrams they returned."""
    return (REGISTRY.get_sample_value("dnsrace_dns_udp_batches_total") or 0.0,
            REGISTRY.get_sample_value("dnsrace_dns_udp_batched_datagrams_total") or 0.0)


async def test_a_burst_from_many_clients_is_answered_in_batches_each_to_its_sender(
        redis_server: EmbeddedRedis, served: ZoneStore) -> None:
    server = await _server(redis_server, served, batch=64)
    try:
        batches_before, datagrams_before = _batches()
        with clients(BURST_CLIENTS) as socks:
            # Every datagram is sent before the server's event loop runs again, so they wait in
            # its socket together; garbage between them gets no reply.
            for n in range(BURST_QUERIES):
                for c, sock in enumerate(socks):
                    qid = c * 1000 + n
                    sock.sendto(query(names.REGIONAL, qid=qid), (server.host, server.port))
                    sock.sendto(b"\x00\x01\x80" + bytes(14), (server.host, server.port))  # QR=1
                    sock.sendto(b"\x07", (server.host, server.port))  # too short
            for c, sock in enumerate(socks):
                ids = set()
                for _ in range(BURST_QUERIES):
                    reply = DNSRecord.parse(await _recv(sock))
                    assert str(reply.rr[0].rdata) == "127.0.10.1"
                    ids.add(reply.header.id)
                assert ids == {c * 1000 + n for n in range(BURST_QUERIES)}
                sock.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    sock.recv(512)  # nothing more: the garbage was not answered
            batches, datagrams = _batches()
            sent = BURST_CLIENTS * BURST_QUERIES * 3
            assert datagrams - datagrams_before == sent
            taken = batches - batches_before
            assert sent / 64 <= taken < sent / 2, "the burst was read one datagram at a time"
            # Then a burst with nothing dropped: every reply goes back to its own sender again.
            for c, sock in enumerate(reversed(socks)):
                sock.settimeout(5.0)
                sock.sendto(query(names.REGIONAL, qid=c), (server.host, server.port))
            for c, sock in enumerate(reversed(socks)):
                assert DNSRecord.parse(await _recv(sock)).header.id == c
    finally:
        await server.stop()


async def test_queries_one_at_a_time_are_taken_one_by_one_each_to_its_sender(
        redis_server: EmbeddedRedis, served: ZoneStore) -> None:
    server = await _server(redis_server, served, batch=64)
    try:
        batches_before, datagrams_before = _batches()
        with clients(3) as socks:
            for n in range(30):  # each waits for its reply: one datagram per wake-up
                sock = socks[n % 3]
                sock.sendto(query(names.REGIONAL, qid=n), (server.host, server.port))
                reply = DNSRecord.parse(await _recv(sock))
                assert reply.header.id == n and str(reply.rr[0].rdata) == "127.0.10.1"
        batches, datagrams = _batches()
        assert datagrams - datagrams_before == 30
        assert batches - batches_before == 30, "one receive per lone datagram"
    finally:
        await server.stop()


async def _recv(sock: socket.socket) -> bytes:
    """One datagram, read off the event loop (the server under test runs on it)."""
    return await asyncio.get_running_loop().run_in_executor(None, sock.recv, 4096)


QUESTIONS = [(names.REGIONAL, "A", None), (names.REGIONAL, "A", 1232), (names.REGIONAL, "AAAA",
             None), (f"absent.{names.ZONE}", "A", None), (names.ZONE, "SOA", 4096),
             ("example.com", "A", None), (names.ZONE, "ANY", None)]


async def test_batched_and_one_by_one_udp_give_the_same_bytes(
        redis_server: EmbeddedRedis, served: ZoneStore) -> None:
    batched = await _server(redis_server, served, batch=64)
    single = await _server(redis_server, served, batch=0)
    try:
        assert (batched.udp_batch, single.udp_batch) == (64, 0)
        with clients(1) as (sock,):
            for name, qtype, edns in QUESTIONS:
                wire = query(name, qtype, qid=4242, edns=edns)
                replies = []
                for server in (batched, single):
                    sock.sendto(wire, (server.host, server.port))
                    replies.append(await _recv(sock))
                assert replies[0] == replies[1], (name, qtype, edns)
                assert DNSRecord.parse(replies[0]).header.id == 4242
    finally:
        await batched.stop()
        await single.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
async def test_batched_udp_answers_over_ipv6_loopback(redis_server: EmbeddedRedis,
                                                       served: ZoneStore) -> None:
    server = await _server(redis_server, served, batch=16, host="::1")
    try:
        with clients(3, socket.AF_INET6, "::1") as socks:
            for n, sock in enumerate(socks):
                sock.sendto(query(names.REGIONAL, qid=n), ("::1", server.port))
            for n, sock in enumerate(socks):
                reply = DNSRecord.parse(await _recv(sock))
                assert reply.header.id == n and str(reply.rr[0].rdata) == "127.0.10.1"
    finally:
        await server.stop()
