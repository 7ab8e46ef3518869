"""Query bytes in, reply bytes out: golden fixtures, malformed input, the reply cache.

These drive ReplyEngine directly (no sockets): every path a datagram can take.
"""

from __future__ import annotations

import random
import struct

from dnslib import EDNS0, QTYPE, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from dns_server.answer import AnswerPolicy, Question, resolve
from dns_server.encode import _address_reply, encode_reply_dnslib
from dns_server.engine import ReplyEngine
from dns_server.protocol import EdnsKind
from dns_server.zone import Zone
from services.core import names
from services.core.records import (
    Alias,
    RecordSet,
    WeightedAddress,
    ZoneSnapshot,
    a_records,
    alias_record,
)
from services.store.zone import zone_apex_batch

APEX = {c.rrset.key: c.rrset.value for c in zone_apex_batch(ttl_s=5, negative_ttl_s=5).changes}
TREE3 = a_records(names.tree_name(3, names.REGIONAL), [WeightedAddress("127.0.10.7", 100)])
ALIAS3 = alias_record(names.REGIONAL, Alias(TREE3.name, 3))

# Captured from dig 9.18 (`dig @127.0.0.1 -p PORT <name> A [+dnssec | +noedns +norecurse]`)
# and the replies of this server for a zone at serial 11 whose regional endpoint names a
# one-address tree: id, RD and the question's 0x20 case are echoed, AD is cleared, the OPT
# carries our 1232-byte size, echoes DO and holds option 65001 with the generation behind the
# answer (names.GENERATION_OPTION, here 3), and dig's COOKIE option is ignored.
GOLDEN = [
    ("9b92012000010000000000010864796e616d6f64620975732d656173742d3109616d617a6f6e61777303636f"
     "6d000001000100002904d000000000000c000a00089194174851d3e0c6",
     "9b92850000010001000000010864796e616d6f64620975732d656173742d3109616d617a6f6e61777303636f"
     "6d0000010001c00c000100010000000500047f000a0700002904d000000000000c"
     "fde900080000000000000003"),
    ("d025012000010000000000010844796e616d6f44420955532d656173742d3109616d617a6f6e61777303636f"
     "6d000001000100002904d000008000000c000a00087723c845d3cc3d0a",
     "d025850000010001000000010844796e616d6f44420955532d656173742d3109616d617a6f6e61777303636f"
     "6d0000010001c00c000100010000000500047f000a0700002904d000008000000c"
     "fde900080000000000000003"),
    ("d47b00200001000000000000076d697373696e670975732d656173742d3109616d617a6f6e61777303636f6d"
     "0000010001",
     "d47b84030001000000010000076d697373696e670975732d656173742d3109616d617a6f6e61777303636f6d"
     "0000010001c01400060001000000050027036e7331c0140a686f73746d6173746572c0140000000b0000003c"
     "0000000a00000e1000000005"),
]


def zone_of(*rrsets: RecordSet, serial: int = 11) -> Zone:
    return Zone.from_snapshot(ZoneSnapshot(serial, {**APEX, **{r.key: r.value for r in rrsets}}))


def engine_for(zone: Zone | None, seed: int = 0) -> ReplyEngine:
    engine = ReplyEngine(AnswerPolicy(ttl_s=5), random.Random(seed))
    if zone is not None:
        engine.set_zone(zone)
    return engine


def query(name: str, qtype: str = "A", qid: int = 7, edns: int | None = None,
          do: bool = False) -> bytes:
    record = DNSRecord.question(name, qtype)
    record.header.id = qid
    if edns is not None:
        record.add_ar(EDNS0(udp_len=edns, flags="do" if do else ""))
    return bytes(record.pack())


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_golden_replies_byte_for_byte() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    for query_hex, reply_hex in GOLDEN:
        assert engine.respond(bytes.fromhex(query_hex), False) == bytes.fromhex(reply_hex)
        assert engine.respond(bytes.fromhex(query_hex), True) == bytes.fromhex(reply_hex)


def test_golden_replies_are_the_same_from_the_slow_path() -> None:
    """An empty cache (first query) and a warm one give identical bytes."""
    for query_hex, reply_hex in GOLDEN:
        engine = engine_for(zone_of(TREE3, ALIAS3))
        assert engine.respond(bytes.fromhex(query_hex), False) == bytes.fromhex(reply_hex)
        assert len(engine.cache) == 1


def test_question_case_and_rd_are_echoed() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    for name in ("DYNAMODB.us-east-1.AMAZONAWS.com", "dYnAmOdB.uS-EaSt-1.aMaZoNaWs.CoM"):
        reply = DNSRecord.parse(engine.respond(query(name), False))
        assert str(reply.q.qname) == name + "."
        assert str(reply.rr[0].rname) == name + "."
        assert reply.header.rd == 1 and reply.header.aa == 1
    norecurse = bytearray(query(names.REGIONAL))
    norecurse[2] &= 0xFE
    assert DNSRecord.parse(engine.respond(bytes(norecurse), False)).header.rd == 0


def test_large_answer_is_truncated_over_udp_without_edns_and_whole_over_tcp() -> None:
    tree = a_records(TREE3.name, [WeightedAddress(f"127.0.10.{i}", 1) for i in range(1, 41)])
    engine = engine_for(zone_of(tree, ALIAS3))
    small = DNSRecord.parse(engine.respond(query(names.REGIONAL), False))
    assert small.header.tc == 1 and small.rr == [] and small.header.rcode == 0
    edns = DNSRecord.parse(engine.respond(query(names.REGIONAL, edns=4096), False))
    assert edns.header.tc == 0 and len(edns.rr) == 40
    assert [rr.rtype for rr in edns.ar] == [QTYPE.OPT] and edns.ar[0].edns_len == 1232
    whole = DNSRecord.parse(engine.respond(query(names.REGIONAL), True))
    assert whole.header.tc == 0 and len(whole.rr) == 40


def test_edns_reply_caps_at_the_clients_size_but_never_below_512() -> None:
    tree = a_records(TREE3.name, [WeightedAddress(f"127.0.10.{i}", 1) for i in range(1, 41)])
    engine = engine_for(zone_of(tree, ALIAS3))
    reply = DNSRecord.parse(engine.respond(query(names.REGIONAL, edns=600), False))
    assert reply.header.tc == 1
    reply = DNSRecord.parse(engine.respond(query(names.REGIONAL, edns=100), False))
    assert reply.header.tc == 1  # 512 is the floor, and 40 answers need ~700 bytes


def test_short_packets_and_responses_are_dropped_and_counted() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    before_short = sample("dnsrace_dns_malformed_total", reason="dropped_short")
    before_resp = sample("dnsrace_dns_malformed_total", reason="dropped_response")
    assert engine.respond(b"", False) is None
    assert engine.respond(b"\x12\x34\x01", False) is None
    response = bytearray(query(names.REGIONAL))
    response[2] |= 0x80
    assert engine.respond(bytes(response), False) is None
    assert sample("dnsrace_dns_malformed_total", reason="dropped_short") == before_short + 2
    assert sample("dnsrace_dns_malformed_total", reason="dropped_response") == before_resp + 1


def test_unparseable_message_gets_formerr_with_flags_cleared() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    before = sample("dnsrace_dns_malformed_total", reason="formerr")
    garbage = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f\xff\xff"
    assert engine.respond(garbage, False) == b"\xab\xcd\x80\x01" + bytes(8)
    two = bytearray(query(names.REGIONAL))
    two[5] = 2
    assert engine.respond(bytes(two), False) == bytes(two[:2]) + b"\x80\x01" + bytes(8)
    zero = bytearray(query(names.REGIONAL))
    zero[5] = 0
    assert engine.respond(bytes(zero[:12]), False) == bytes(zero[:2]) + b"\x80\x01" + bytes(8)
    assert sample("dnsrace_dns_malformed_total", reason="formerr") == before + 3


def test_unknown_opcode_gets_notimp() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    before = sample("dnsrace_dns_malformed_total", reason="notimp")
    for opcode in (2, 4, 5, 15):
        packet = bytearray(query(names.REGIONAL))
        packet[2] = (packet[2] & 0x87) | (opcode << 3)
        reply = engine.respond(bytes(packet), False)
        assert reply == bytes(packet[:2]) + bytes((0x80 | opcode << 3, 4)) + bytes(8)
    assert sample("dnsrace_dns_malformed_total", reason="notimp") == before + 4


def test_edns_version_above_zero_gets_badvers() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    record = DNSRecord.question(names.REGIONAL)
    record.add_ar(EDNS0(udp_len=1232, version=1))
    reply = DNSRecord.parse(engine.respond(bytes(record.pack()), False))
    (opt,) = reply.ar
    assert reply.header.rcode == 0 and (opt.ttl >> 24) == 1  # extended rcode 16 = BADVERS
    assert reply.rr == []


def test_two_opt_records_are_a_format_error() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    record = DNSRecord.question(names.REGIONAL)
    record.add_ar(EDNS0(udp_len=1232))
    record.add_ar(EDNS0(udp_len=1232))
    reply = engine.respond(bytes(record.pack()), False)
    assert reply is not None and reply[2:4] == b"\x80\x01"


def test_before_the_zone_is_loaded_queries_get_servfail() -> None:
    reply = DNSRecord.parse(engine_for(None).respond(query(names.REGIONAL), False))
    assert reply.header.rcode == 2 and reply.header.id == 7


def test_served_answers_name_generation_and_address_count() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    engine.respond(query(names.REGIONAL.upper()), False)
    engine.respond(query(names.REGIONAL), False)
    engine.respond(query(f"nope.{names.ZONE}"), False)  # not a named endpoint: not reported
    assert [(a.qname, a.generation, a.address_count, a.count)
            for a in engine.take_served()] == [(names.REGIONAL, 3, 1, 2)]


def test_empty_answers_are_counted_per_endpoint_role() -> None:
    engine = engine_for(zone_of(ALIAS3))  # the alias names a tree that is gone
    before = sample("dnsrace_dns_empty_answers_total", endpoint="regional")
    for _ in range(3):
        reply = DNSRecord.parse(engine.respond(query(names.REGIONAL), False))
        assert reply.header.rcode == 0 and reply.rr == [] and len(reply.auth) == 1
    engine.respond(query(names.REGIONAL, "AAAA"), False)  # NODATA by design: not counted
    assert sample("dnsrace_dns_empty_answers_total", endpoint="regional") == before + 3


def test_weighted_replies_spread_first_addresses_by_weight() -> None:
    tree = a_records(TREE3.name, [WeightedAddress("127.0.10.1", 1),
                                  WeightedAddress("127.0.10.2", 3)])
    engine = engine_for(zone_of(tree, ALIAS3), seed=5)
    firsts = [DNSRecord.parse(engine.respond(query(names.REGIONAL), False)).rr[0].rdata
              for _ in range(4000)]
    share = sum(str(ip) == "127.0.10.2" for ip in firsts) / len(firsts)
    assert 0.72 < share < 0.78


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=300) | st.builds(
    lambda header, tail: header + tail,
    st.binary(min_size=12, max_size=12).map(lambda h: h[:2] + bytes((h[2] & 0x7F,)) + h[3:]),
    st.binary(max_size=200),
))
def test_no_input_breaks_the_server(packet: bytes) -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    errors = sample("dnsrace_dns_internal_errors_total")
    reply = engine.respond(packet, False)
    assert sample("dnsrace_dns_internal_errors_total") == errors
    if reply is not None:
        assert reply[:2] == packet[:2] and reply[2] & 0x80
        assert len(reply) <= 1232
        DNSRecord.parse(reply)
    assert engine.respond(query(names.REGIONAL), False) is not None


def _question_bytes(name: str) -> bytes:
    wire = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\x00"
    return wire + struct.pack("!HH", 1, 1)


def test_question_pointing_forward_is_a_format_error() -> None:
    """Only earlier names can be pointed at; a question has none before it (header only)."""
    engine = engine_for(zone_of(TREE3, ALIAS3))
    header = b"\x00\x09\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    packet = header + b"\xc0\x12" + struct.pack("!HH", 1, 1) + _question_bytes(names.REGIONAL)
    assert engine.respond(packet, False) == b"\x00\x09\x80\x01" + bytes(8)


def test_trailing_bytes_after_a_query_still_get_an_answer_with_the_question_echoed() -> None:
    engine = engine_for(zone_of(TREE3, ALIAS3))
    packet = query("DynamoDB.us-east-1.amazonaws.com") + b"\x00\x00junk"
    reply = DNSRecord.parse(engine.respond(packet, False))
    assert str(reply.q.qname) == "DynamoDB.us-east-1.amazonaws.com."
    assert [str(rr.rdata) for rr in reply.rr] == ["127.0.10.7"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.lists(st.integers(0, 300), min_size=1, max_size=12),
       edns=st.sampled_from(list(EdnsKind)))
def test_the_direct_encoding_is_dnslibs_byte_for_byte(weights: list[int],
                                                       edns: EdnsKind) -> None:
    """Every weighted variant of an alias's answer (any count, zero weights, all zero), with
    and without EDNS: the reply encoded directly is the one dnslib packs."""
    tree = a_records(TREE3.name, [WeightedAddress(f"127.0.{i // 250}.{i % 250 + 1}", w)
                                  for i, w in enumerate(weights)])
    zone = zone_of(tree, ALIAS3)
    question = Question(tuple(names.REGIONAL.split(".")), int(QTYPE.A))
    resolution = resolve(zone, question, AnswerPolicy(ttl_s=5))
    direct = _address_reply(question, resolution, edns)
    assert direct is not None, "the direct encoding is the one this tests"
    assert len(direct.tails) == len(resolution.variants) >= 1
    assert direct == encode_reply_dnslib(question, resolution, edns)
