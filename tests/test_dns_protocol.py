"""The real server over real UDP and TCP sockets on loopback, fed by a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from dnslib import EDNS0, QTYPE, DNSRecord
from prometheus_client import REGISTRY

from dns_server.client import query_tcp, query_udp, read_tcp_message, tcp_frame
from dns_server.metrics import served_generation
from dns_server.sampling import AnswerSampler
from dns_server.server import DnsServer
from dns_server.transport import TcpLimits
from services.config import load
from services.core import events, names
from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    Committed,
    RecordSet,
    WeightedAddress,
    a_records,
    alias_record,
)
from services.runtime.redis_server import EmbeddedRedis
from services.store.zone import ZoneStore, ensure_apex
from tests.conftest import ManualClock

HOST = "127.0.0.1"
TREE1 = a_records(names.tree_name(1, names.REGIONAL), [WeightedAddress("127.0.10.1", 1)])
TREE2 = a_records(names.tree_name(2, names.REGIONAL), [WeightedAddress("127.0.10.2", 1)])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def query(name: str, qtype: str = "A", qid: int | None = None, edns: int | None = None) -> bytes:
    record = DNSRecord.question(name, qtype)
    record.header.id = random.randrange(65536) if qid is None else qid
    if edns is not None:
        record.add_ar(EDNS0(udp_len=edns))
    return bytes(record.pack())


async def commit(zone: ZoneStore, *changes: Change) -> Committed:
    return await zone.apply(ChangeBatch(changes))


def flip(tree: RecordSet, generation: int) -> Change:
    return Change(Action.UPSERT, alias_record(names.REGIONAL, Alias(tree.name, generation)))


async def start_server(redis_server: EmbeddedRedis, zone: ZoneStore,
                       tcp_limits: TcpLimits | None = None) -> DnsServer:
    await ensure_apex(zone, 5, 5)
    server = DnsServer(load({}), keys=zone.keys, redis_url=redis_server.url, port=0,
                       rng=random.Random(1), tcp_limits=tcp_limits)
    await server.start()
    await server.wait_for_serial(await zone.serial(), timeout_s=10)
    return server


@pytest.fixture
async def dns(redis_server: EmbeddedRedis, zone: ZoneStore) -> AsyncIterator[DnsServer]:
    server = await start_server(redis_server, zone)
    yield server
    await server.stop()


async def ask(server: DnsServer, name: str, qtype: str = "A", tcp: bool = False,
              edns: int | None = None) -> DNSRecord:
    wire = query(name, qtype, edns=edns)
    send = query_tcp if tcp else query_udp
    reply = DNSRecord.parse(await send(wire, HOST, server.port))
    assert reply.header.id == DNSRecord.parse(wire).header.id
    return reply


def addresses(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_a_committed_change_is_in_the_very_next_answer(dns: DnsServer, zone: ZoneStore,
                                                            tcp: bool) -> None:
    done = await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    await dns.wait_for_serial(done.serial, timeout_s=5)
    reply = await ask(dns, names.REGIONAL, tcp=tcp)
    assert reply.header.aa == 1 and reply.header.rcode == 0
    assert addresses(reply) == ["127.0.10.1"] and reply.rr[0].ttl == 5
    done = await commit(zone, Change(Action.CREATE, TREE2), flip(TREE2, 2))
    await dns.wait_for_serial(done.serial, timeout_s=5)
    assert addresses(await ask(dns, names.REGIONAL, tcp=tcp)) == ["127.0.10.2"]
    assert sample("dnsrace_dns_generation_served", endpoint="regional") == 2
    assert sample("dnsrace_dns_zone_serial") == done.serial


async def test_deleting_the_active_tree_gives_the_empty_answer_with_soa(
        dns: DnsServer, zone: ZoneStore) -> None:
    await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    done = await commit(zone, Change(Action.DELETE, TREE1))
    await dns.wait_for_serial(done.serial, timeout_s=5)
    before = sample("dnsrace_dns_empty_answers_total", endpoint="regional")
    reply = await ask(dns, names.REGIONAL)
    assert reply.header.rcode == 0 and reply.rr == []
    (soa,) = reply.auth
    assert soa.rtype == QTYPE.SOA and soa.rdata.times[0] == done.serial
    assert sample("dnsrace_dns_empty_answers_total", endpoint="regional") == before + 1
    assert sample("dnsrace_dns_generation_served", endpoint="regional") == 0


async def test_outside_nxdomain_and_apex_over_the_wire(dns: DnsServer) -> None:
    refused = await ask(dns, "example.com")
    assert refused.header.rcode == 5 and refused.header.aa == 0 and refused.rr == []
    missing = await ask(dns, f"nothing.{names.ZONE}")
    assert missing.header.rcode == 3 and [rr.rtype for rr in missing.auth] == [QTYPE.SOA]
    ns = await ask(dns, names.ZONE, "NS", tcp=True)
    assert [str(rr.rdata) for rr in ns.rr] == [f"ns1.{names.ZONE}."]
    assert [str(rr.rdata) for rr in ns.ar] == ["127.0.0.1"]


async def test_serial_gap_triggers_a_resync_that_catches_up(dns: DnsServer, zone: ZoneStore,
                                                           redis_client: aioredis.Redis) -> None:
    before = sample("dnsrace_dns_resyncs_total", reason="gap")
    await redis_client.incr(zone.keys.serial)  # a batch whose notification we never see
    done = await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    await dns.wait_for_serial(done.serial, timeout_s=10)
    assert sample("dnsrace_dns_resyncs_total", reason="gap") == before + 1
    assert addresses(await ask(dns, names.REGIONAL)) == ["127.0.10.1"]


async def test_a_zone_wiped_and_rebuilt_resyncs_although_its_serials_start_again(
        dns: DnsServer, zone: ZoneStore, redis_client: aioredis.Redis) -> None:
    """Notifications carry their values and are applied above the zone's serial only: a zone
    rebuilt from serial 1 must not be skipped as old news."""
    done = await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    await dns.wait_for_serial(done.serial, timeout_s=10)
    before = sample("dnsrace_dns_resyncs_total", reason="serial_regressed")
    await redis_client.delete(zone.keys.rrsets, zone.keys.serial, zone.keys.refs)
    await ensure_apex(zone, 5, 5)
    rebuilt = await commit(zone, Change(Action.CREATE, TREE2), flip(TREE2, 2))
    assert rebuilt.serial <= done.serial
    await _until(lambda: dns.zone is not None and served_generation(dns.zone,
                                                                    names.REGIONAL) == 2)
    assert addresses(await ask(dns, names.REGIONAL)) == ["127.0.10.2"]
    assert sample("dnsrace_dns_resyncs_total", reason="serial_regressed") == before + 1


async def test_lost_subscription_resyncs_and_sees_what_was_missed(
        dns: DnsServer, zone: ZoneStore, redis_client: aioredis.Redis) -> None:
    before = sample("dnsrace_dns_resyncs_total", reason="disconnect")
    await redis_client.client_kill_filter(_type="pubsub")
    done = await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    await dns.wait_for_serial(done.serial, timeout_s=10)
    assert addresses(await ask(dns, names.REGIONAL)) == ["127.0.10.1"]
    await _until(lambda: sample("dnsrace_dns_resyncs_total", reason="disconnect") > before)


async def test_redis_restart_resyncs_and_answers_throughout(
        dns: DnsServer, zone: ZoneStore, redis_server: EmbeddedRedis) -> None:
    await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    before = sample("dnsrace_dns_resyncs_total", reason="redis_restart")
    await asyncio.to_thread(redis_server.stop)
    assert addresses(await ask(dns, names.REGIONAL)) == ["127.0.10.1"]  # Redis away: still up
    await asyncio.to_thread(redis_server.start)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        done = await commit(ZoneStore(client, zone.keys, clock=zone.clock),
                            Change(Action.CREATE, TREE2), flip(TREE2, 2))
    finally:
        await client.aclose()
    await dns.wait_for_serial(done.serial, timeout_s=15)
    assert addresses(await ask(dns, names.REGIONAL)) == ["127.0.10.2"]
    await _until(lambda: sample("dnsrace_dns_resyncs_total", reason="redis_restart") > before)


async def test_tcp_carries_several_queries_on_one_connection(dns: DnsServer,
                                                             zone: ZoneStore) -> None:
    done = await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    await dns.wait_for_serial(done.serial, timeout_s=5)
    reader, writer = await asyncio.open_connection(HOST, dns.port)
    try:
        wires = [query(names.REGIONAL, qid=1), query(f"x.{names.ZONE}", qid=2),
                 query(names.ZONE, "SOA", qid=3)]
        writer.write(b"".join(tcp_frame(w) for w in wires))  # pipelined, one segment
        await writer.drain()
        replies = [DNSRecord.parse(await asyncio.wait_for(read_tcp_message(reader), 5))
                   for _ in wires]
        assert [(r.header.id, r.header.rcode) for r in replies] == [(1, 0), (2, 3), (3, 0)]
        writer.write(tcp_frame(query(names.REGIONAL, qid=4)))
        again = DNSRecord.parse(await asyncio.wait_for(read_tcp_message(reader), 5))
        assert again.header.id == 4 and addresses(again) == ["127.0.10.1"]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_large_reply_is_truncated_over_udp_and_whole_over_tcp(dns: DnsServer,
                                                                    zone: ZoneStore) -> None:
    big = a_records(TREE1.name, [WeightedAddress(f"127.0.10.{i}", 1) for i in range(1, 41)])
    done = await commit(zone, Change(Action.CREATE, big), flip(big, 1))
    await dns.wait_for_serial(done.serial, timeout_s=5)
    udp = await ask(dns, names.REGIONAL)
    assert udp.header.tc == 1 and udp.rr == []
    assert len(addresses(await ask(dns, names.REGIONAL, edns=1232))) == 40
    tcp = await ask(dns, names.REGIONAL, tcp=True)
    assert tcp.header.tc == 0 and len(addresses(tcp)) == 40


async def test_malformed_inputs_get_their_action_and_the_server_keeps_answering(
        dns: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    sent = itertools.count()
    response = bytearray(query(names.ZONE, qid=0x6161))
    response[2] |= 0x80
    two = bytearray(query(names.ZONE, qid=0x7171))
    two[5] = 2
    update = bytearray(query(names.ZONE, qid=0x8181))
    update[2] = (update[2] & 0x87) | (5 << 3)
    garbage = b"\x91\x91\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xfe\xfd"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, dns.port))

        async def exchange(packet: bytes) -> bytes:
            """Send ``packet`` then a good query: whatever comes first answers ``packet``.

            The good query asks a name never asked before: it is answered in order with
            ``packet`` (a reply prepared before may overtake both on the compiled fast path).
            """
            good = query(f"probe{next(sent)}.{names.ZONE}", "A", qid=0x5151)
            await loop.sock_sendall(sock, packet)
            await loop.sock_sendall(sock, good)
            async with asyncio.timeout(5):
                first = await loop.sock_recv(sock, 4096)
                if first[:2] != good[:2]:
                    assert (await loop.sock_recv(sock, 4096))[:2] == good[:2]
            return first

        assert (await exchange(b"\x01\x02\x03"))[:2] == b"\x51\x51"  # dropped
        assert (await exchange(bytes(response)))[:2] == b"\x51\x51"  # dropped
        assert await exchange(garbage) == b"\x91\x91\x80\x01" + bytes(8)
        assert await exchange(bytes(two)) == b"\x71\x71\x80\x01" + bytes(8)
        assert await exchange(bytes(update)) == b"\x81\x81\xa8\x04" + bytes(8)
    assert (await ask(dns, names.ZONE, "SOA")).header.rcode == 0


async def test_idle_tcp_connection_is_closed(redis_server: EmbeddedRedis,
                                             zone: ZoneStore) -> None:
    server = await start_server(redis_server, zone, TcpLimits(idle_timeout_s=0.3))
    try:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(b"\x00")  # half a length prefix, then silence
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # the server hung up
        writer.close()
        await _until(lambda: server.tcp_connections == 0)
    finally:
        await server.stop()


async def test_connection_cap_and_a_stalled_client_do_not_block_others(
        redis_server: EmbeddedRedis, zone: ZoneStore) -> None:
    server = await start_server(redis_server, zone, TcpLimits(max_connections=2))
    writers: list[asyncio.StreamWriter] = []
    try:
        _, stalled = await asyncio.open_connection(HOST, server.port)
        writers.append(stalled)
        stalled.write(b"\x00\x30\x12")  # a 48-byte message that never arrives
        active_reader, active = await asyncio.open_connection(HOST, server.port)
        writers.append(active)
        await _until(lambda: server.tcp_connections == 2)
        over_reader, over = await asyncio.open_connection(HOST, server.port)
        writers.append(over)
        async with asyncio.timeout(5):
            assert await over_reader.read() == b""  # over the cap: closed at once
        active.write(tcp_frame(query(names.ZONE, "SOA", qid=9)))
        reply = DNSRecord.parse(await asyncio.wait_for(read_tcp_message(active_reader), 5))
        assert reply.header.id == 9 and reply.header.rcode == 0
        assert sample("dnsrace_dns_tcp_connections") >= 2
    finally:
        for writer in writers:
            writer.close()
        await server.stop()


async def test_sampler_by_time_reports_the_generations_clients_were_served(
        dns: DnsServer, zone: ZoneStore, clock: ManualClock) -> None:
    history = events.MemoryHistory(clock)
    sampler = AnswerSampler(history, dns.engine.take_served, interval_s=0.05)
    dns.engine.take_served()  # what earlier tests of this server answered
    done = await commit(zone, Change(Action.CREATE, TREE1), flip(TREE1, 1))
    await dns.wait_for_serial(done.serial, timeout_s=5)
    await ask(dns, names.REGIONAL.upper())
    ticking = asyncio.create_task(sampler.sampling())
    try:
        sample = await asyncio.wait_for(sampler.queue.get(), 5)
    finally:
        ticking.cancel()
    assert (sample.endpoint, sample.generation, sample.addresses) == (names.REGIONAL, 1, 1)


async def test_stop_closes_both_sockets(redis_server: EmbeddedRedis, zone: ZoneStore) -> None:
    server = await start_server(redis_server, zone)
    port = server.port
    await server.stop()
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))  # would fail with EADDRINUSE if still open


async def _until(condition: object, timeout_s: float = 10.0) -> None:
    """Poll a condition with a deadline (for effects that have no event of their own)."""
    assert callable(condition)
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def test_rapid_flips_never_show_a_state_the_zone_never_had(dns: DnsServer,
                                                                 zone: ZoneStore) -> None:
    """Each batch builds a tree, flips to it and deletes the previous one: every committed
    zone has a live tree, so no answer may ever be empty (reading one batch's keys after the
    next committed would show the alias without its tree)."""
    def tree(g: int) -> RecordSet:
        return a_records(names.tree_name(g, names.REGIONAL),
                         [WeightedAddress(f"127.0.10.{g % 200 + 1}", 1)])

    first = await commit(zone, Change(Action.CREATE, tree(0)), flip(tree(0), 0))
    await dns.wait_for_serial(first.serial, timeout_s=5)
    propagated = sample("dnsrace_dns_propagation_seconds_count")
    stop = asyncio.Event()
    seen: list[int] = []

    async def writer() -> int:
        serial = 0
        for g in range(1, 150):
            done = await commit(zone, Change(Action.CREATE, tree(g)), flip(tree(g), g),
                                Change(Action.DELETE, tree(g - 1)))
            serial = done.serial
        stop.set()
        return serial

    async def reader() -> None:
        while not stop.is_set():
            seen.append(len(addresses(await ask(dns, names.REGIONAL))))

    last, _ = await asyncio.gather(writer(), reader())
    await dns.wait_for_serial(last, timeout_s=10)
    assert len(seen) > 20 and 0 not in seen
    assert addresses(await ask(dns, names.REGIONAL)) == ["127.0.10.150"]
    assert sample("dnsrace_dns_propagation_seconds_count") > propagated
