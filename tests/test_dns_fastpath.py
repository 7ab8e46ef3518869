"""The compiled UDP fast path (dns_server._fastpath and dns_server.fastpath) over real sockets.

First the C thread alone: a prepared reply answered with the query's id, weighted variants,
closed slots, misses handed over with their sender. Then inside the server on a real Redis:
the same bytes as the Python path, no stale answer after a zone change, every answer counted.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from dnslib import DNSRecord
from prometheus_client import REGISTRY

from dns_server import fastpath
from dns_server.fastpath import _fastpath  # None where it was not built (then all skip)
from services.core import names
from services.core.records import Action, Change
from services.runtime.redis_server import EmbeddedRedis
from services.store.zone import ZoneStore
from tests.test_dns_protocol import TREE1, TREE2, commit, flip, query
from tests.test_dns_udp_batch import QUESTIONS, _recv, _server, clients, served

pytestmark = pytest.mark.skipif(
    not fastpath.available(),
    reason="dns_server._fastpath was not built (needs gcc and the Python headers at install: "
           "apt-get install gcc python3-dev, then pip install -e . again)")

__all__ = ["served"]  # a fixture used below


@contextmanager
def c_server() -> Iterator[tuple[_fastpath.Server, socket.socket, socket.socket]]:
    """A started C server on a loopback socket, and a client socket (5-s timeouts)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 50_000))
    server = _fastpath.Server(sock.fileno(), 16)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5.0)
    client.connect(sock.getsockname())
    server.start()
    try:
        yield server, sock, client
    finally:
        server.stop()
        client.close()
        sock.close()


def _misses(server: _fastpath.Server, count: int) -> list[tuple[bytes, bytes]]:
    """Wait (5-s deadline) until ``count`` misses are queued, and take them."""
    taken: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 5
    while len(taken) < count:
        taken += server.misses()
        assert time.monotonic() < deadline, taken
        time.sleep(0.001)
    return taken


QUERY = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x00\x00\x01\x00\x01"
"""A query's bytes after its id."""


def test_a_prepared_reply_goes_back_with_the_querys_id_and_is_counted_once() -> None:
    with c_server() as (server, _, client):
        slot = server.open()
        server.put(QUERY, slot, b"HEAD", (b"-tail",), None)
        for qid in (b"\x12\x34", b"\xab\xcd"):
            client.send(qid + QUERY)
            assert client.recv(4096) == qid + b"HEAD-tail"
        assert server.counts() == [(slot, 2)]
        assert server.counts() == []
        assert server.stats()["hits"] == 2


def test_a_closed_slot_answers_no_more_and_its_queries_reach_python_with_their_sender() -> None:
    with c_server() as (server, _, client):
        slot = server.open()
        server.put(QUERY, slot, b"OLD", (b"",), None)
        client.send(b"\x00\x01" + QUERY)
        assert client.recv(4096) == b"\x00\x01OLD"
        assert server.close(slot) == 1  # its answer, not yet read
        client.send(b"\x00\x02" + QUERY)
        [(data, peer)] = _misses(server, 1)
        assert data == b"\x00\x02" + QUERY
        assert server.send(b"\x00\x02NEW", peer)
        assert client.recv(4096) == b"\x00\x02NEW"
        assert server.counts() == []
        with pytest.raises(KeyError):
            server.put(QUERY, slot, b"OLD", (b"",), None)


def test_variants_are_chosen_by_their_weights() -> None:
    with c_server() as (server, _, client):
        slot = server.open()
        server.put(QUERY, slot, b"", (b"a", b"b"), (1, 4))
        seen: Counter[bytes] = Counter()
        for n in range(2000):
            client.send(n.to_bytes(2, "big") + QUERY)
            seen[client.recv(4096)[2:]] += 1
        assert 0.2 < seen[b"a"] / 2000 < 0.3, seen  # weight 1 of 4
        assert seen[b"a"] + seen[b"b"] == 2000


def test_garbage_is_a_miss_and_the_thread_keeps_answering() -> None:
    rng = random.Random(7)
    junk = [b"", b"\x01", bytes(12), bytes(rng.randrange(256) for _ in range(900))]
    with c_server() as (server, _, client):
        slot = server.open()
        server.put(QUERY, slot, b"H", (b"T",), None)
        for datagram in junk:
            client.send(datagram)
        assert [data for data, _ in _misses(server, len(junk))] == junk
        client.send(b"\x00\x07" + QUERY)
        assert client.recv(4096) == b"\x00\x07HT"
        with pytest.raises((TypeError, ValueError)):
            server.put(QUERY, slot, b"H", ("not bytes",), None)
        with pytest.raises(ValueError):
            server.put(QUERY, slot, b"H", (b"a", b"b"), (1,))
        client.send(b"\x00\x08" + QUERY)
        assert client.recv(4096) == b"\x00\x08HT"  # the refused puts changed nothing


def test_past_its_bound_the_miss_queue_drops_and_counts_and_keeps_the_rest_in_order() -> None:
    with c_server() as (server, _, client):
        deadline = time.monotonic() + 10

        def send_until(condition: Callable[[], bool], first: int) -> int:
            sent = first
            while not condition():
                client.send(sent.to_bytes(4, "big"))  # nothing prepared: each is a miss
                sent += 1
                if sent % 32 == 0:
                    time.sleep(0.001)  # let the thread keep up with the kernel's buffer
                assert time.monotonic() < deadline, server.stats()
            while server.stats()["datagrams"] < sent:  # the last may still be on their way
                assert time.monotonic() < deadline, (sent, server.stats())
                time.sleep(0.001)
            return sent

        def payloads(misses: list[tuple[bytes, bytes]]) -> list[int]:
            return [int.from_bytes(data, "big") for data, _ in misses]

        sent = send_until(lambda: server.stats()["dropped_misses"] >= 10, 0)
        assert server.stats()["dropped_misses"] == sent - 16384 == sent - _fastpath.MAX_MISSES
        assert payloads(server.misses(100)) == list(range(100))  # the oldest first
        more = send_until(lambda: server.stats()["datagrams"] >= sent + 50, sent)
        assert payloads(server.misses()) == [*range(100, 16384), *range(sent, more)]
        assert server.misses() == []
        assert server.stats()["dropped_misses"] == sent - 16384  # none since


def test_reset_returns_what_was_not_counted_and_forgets_every_record() -> None:
    with c_server() as (server, _, client):
        slot = server.open()
        server.put(QUERY, slot, b"H", (b"T",), None)
        for qid in range(3):
            client.send(qid.to_bytes(2, "big") + QUERY)
            client.recv(4096)
        assert server.reset() == [(slot, 3)]
        assert server.stats()["records"] == 0
        client.send(b"\x00\x09" + QUERY)
        assert [data for data, _ in _misses(server, 1)] == [b"\x00\x09" + QUERY]


async def test_the_server_gives_the_python_paths_bytes_from_c(
        redis_server: EmbeddedRedis, served: ZoneStore) -> None:
    fast = await _server(redis_server, served, batch=64, fast_path=True)
    python = await _server(redis_server, served, batch=0)
    try:
        assert (fast.fast_path, python.fast_path) == (True, False)
        with clients(1) as (sock,):
            for name, qtype, edns in QUESTIONS:
                wire = query(name, qtype, qid=4242, edns=edns)
                replies = []
                for server in (fast, fast, python):  # the second is answered in C
                    sock.sendto(wire, (server.host, server.port))
                    replies.append(await _recv(sock))
                assert replies[0] == replies[1] == replies[2], (name, qtype, edns)
        assert isinstance(fast._udp, fastpath.FastPath)
        assert fast._udp.stats()["hits"] >= len(QUESTIONS) - 1  # example.com is refused
    finally:
        await fast.stop()
        await python.stop()


def _queries(qtype: str) -> float:
    return REGISTRY.get_sample_value("dnsrace_dns_queries_total",
                                     {"rcode": "NOERROR", "qtype": qtype}) or 0.0


def _fast_answers() -> float:
    return REGISTRY.get_sample_value("dnsrace_dns_fast_path_answers_total") or 0.0


async def test_answers_from_c_are_counted_and_sampled_and_a_change_is_never_answered_stale(
        redis_server: EmbeddedRedis, served: ZoneStore) -> None:
    server = await _server(redis_server, served, batch=64, fast_path=True)
    try:
        server.engine.take_served()
        before, fast_before = _queries("A"), _fast_answers()
        wire = query(names.REGIONAL, qid=1)
        with clients(1) as (sock,):
            for _ in range(50):
                sock.sendto(wire, (server.host, server.port))
                assert DNSRecord.parse(await _recv(sock)).rr[0].rdata.toZone() == "127.0.10.1"
            assert _queries("A") - before == 50  # read through /metrics' collector
            assert isinstance(server._udp, fastpath.FastPath)
            assert server._udp.stats()["hits"] == 49
            assert _fast_answers() - fast_before == 49
            served_answers = server.engine.take_served()
            assert [(s.qname, s.generation, s.count) for s in served_answers] == [
                (names.REGIONAL, 1, 50)]  # the first in Python, 49 in C
            done = await commit(served, Change(Action.CREATE, TREE2), flip(TREE2, 2))
            await server.wait_for_serial(done.serial, timeout_s=5)
            sock.sendto(wire, (server.host, server.port))
            assert DNSRecord.parse(await _recv(sock)).rr[0].rdata.toZone() == "127.0.10.2"
            assert _queries("A") - before == 51
    finally:
        await server.stop()


async def test_empty_answers_from_c_are_counted(redis_server: EmbeddedRedis,
                                                served: ZoneStore) -> None:
    server = await _server(redis_server, served, batch=64, fast_path=True)
    labels = {"endpoint": "regional"}
    try:
        done = await commit(served, Change(Action.DELETE, TREE1))
        await server.wait_for_serial(done.serial, timeout_s=5)
        before = REGISTRY.get_sample_value("dnsrace_dns_empty_answers_total", labels) or 0.0
        with clients(1) as (sock,):
            for qid in range(20):
                sock.sendto(query(names.REGIONAL, qid=qid), (server.host, server.port))
                reply = DNSRecord.parse(await _recv(sock))
                assert reply.header.rcode == 0 and not reply.rr
        after = REGISTRY.get_sample_value("dnsrace_dns_empty_answers_total", labels)
        assert after == before + 20
    finally:
        await server.stop()


async def test_a_burst_from_many_clients_is_answered_each_to_its_sender_from_c(
        redis_server: EmbeddedRedis, served: ZoneStore) -> None:
    server = await _server(redis_server, served, batch=64, fast_path=True)
    try:
        with clients(8) as socks:
            for c, sock in enumerate(socks):  # prepare the reply (a miss, answered in Python)
                sock.sendto(query(names.REGIONAL, qid=c), (server.host, server.port))
                assert DNSRecord.parse(await _recv(sock)).header.id == c
            for n in range(50):
                for c, sock in enumerate(socks):
                    sock.sendto(query(names.REGIONAL, qid=1000 * c + n),
                                (server.host, server.port))
            for c, sock in enumerate(socks):
                ids = sorted([DNSRecord.parse(await _recv(sock)).header.id for _ in range(50)])
                assert ids == [1000 * c + n for n in range(50)]
    finally:
        await server.stop()
