"""The reply cache never serves a stale reply, whatever sequence of changes hits the zone."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from dnslib import EDNS0, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from dns_server.answer import AnswerPolicy
from dns_server.cache import CachedReply
from dns_server.engine import ReplyEngine
from dns_server.wire import fast_parse
from dns_server.zone import Zone
from services.core import names
from services.core.records import (
    Alias,
    Lock,
    RecordSet,
    WeightedAddress,
    ZoneSnapshot,
    a_records,
    alias_record,
    lock_record,
)
from services.store.zone import zone_apex_batch

ENDPOINTS = (names.REGIONAL, names.cell_endpoint(1))
APEX = [c.rrset for c in zone_apex_batch(ttl_s=5, negative_ttl_s=5).changes]
ADDRESSES = [WeightedAddress(f"127.0.10.{i}", w) for i, w in ((1, 1), (2, 5), (3, 0), (4, 2))]
QUESTIONS = [
    *(name for e in ENDPOINTS for name in (e, names.tree_name(1, e), names.tree_name(2, e),
                                           names.lock_name(e), names.rollback_name(e))),
    names.ZONE, f"ddb.{names.ZONE}", f"absent.{names.ZONE}", "example.com",
]
QTYPES = ("A", "AAAA", "TXT", "SOA", "NS", "ANY")


def _tree(endpoint: int, generation: int, picks: list[int]) -> RecordSet:
    return a_records(names.tree_name(generation, ENDPOINTS[endpoint]),
                     {ADDRESSES[i] for i in picks})


Change = tuple[str, str | None]
changes = st.one_of(
    st.builds(lambda e, g, picks: (_tree(e, g, picks).key, _tree(e, g, picks).value),
              st.integers(0, 1), st.integers(1, 2), st.lists(st.integers(0, 3), max_size=4)),
    st.builds(lambda e, g: (_tree(e, g, []).key, None), st.integers(0, 1), st.integers(1, 2)),
    st.builds(lambda e, g, rollback: (r := alias_record(
        names.rollback_name(ENDPOINTS[e]) if rollback else ENDPOINTS[e],
        Alias(names.tree_name(g, ENDPOINTS[e]), g))).key and (r.key, r.value),
        st.integers(0, 1), st.integers(1, 2), st.booleans()),
    st.builds(lambda e: (f"{ENDPOINTS[e]}|ALIAS", None), st.integers(0, 1)),
    st.builds(lambda e, holder: (lock_record(names.lock_name(ENDPOINTS[e]), Lock(holder, 1)).key,
                                 lock_record(names.lock_name(ENDPOINTS[e]), Lock(holder, 1)).value),
              st.integers(0, 1), st.sampled_from(["use1-az1", "use1-az2"])),
    st.just((APEX[0].key, None)),
    st.just((APEX[0].key, APEX[0].value)),
)


def _queries() -> list[bytes]:
    packets = []
    for name in QUESTIONS:
        for qtype in QTYPES:
            for edns in (False, True):
                record = DNSRecord.question(name, qtype)
                if edns:
                    record.add_ar(EDNS0(udp_len=1232))
                packets.append(bytes(record.pack()))
    return packets


QUERIES = _queries()


def _facts(entry: CachedReply) -> tuple[object, ...]:
    return (entry.head, entry.tails, entry.cumulative, entry.size, entry.trunc_head,
            entry.trunc_tail, entry.qname, entry.generation, entry.address_count)


class _Middle(random.Random):
    """Always the same weighted pick, so two engines' replies can be compared byte for byte."""

    def random(self) -> float:
        return 0.5


def _fresh(zone: Zone, rng: random.Random | None = None) -> ReplyEngine:
    engine = ReplyEngine(AnswerPolicy(ttl_s=5), rng or random.Random(0))
    engine.set_zone(zone)
    return engine


def _each_change(engine: ReplyEngine, steps: list[Change],
                 rng: Callable[[], random.Random]) -> Iterator[tuple[Change, ReplyEngine]]:
    """Ask ``engine`` every query, apply the next change, notify it; yield the change and a
    fresh engine on the changed zone (``rng`` for its weighted picks)."""
    zone = engine.zone
    assert zone is not None
    for key, value in steps:
        for packet in QUERIES:
            engine.respond(packet, False)
        update = zone.set(key, value)
        zone.serial += 1
        engine.zone_changed({update.name})
        yield (key, value), _fresh(zone, rng())


def _apex_zone() -> Zone:
    return Zone.from_snapshot(ZoneSnapshot(1, {r.key: r.value for r in APEX}))


@settings(max_examples=60, deadline=None)
@given(st.lists(changes, min_size=1, max_size=15))
def test_every_cached_reply_equals_a_fresh_one_after_every_change(steps: list[Change]) -> None:
    engine = _fresh(_apex_zone())
    for change, fresh in _each_change(engine, steps, lambda: random.Random(0)):
        for packet in QUERIES:
            parsed = fast_parse(packet)
            assert parsed is not None
            cached = engine.cache.entries.get(parsed[0])
            if cached is None:
                continue
            fresh.respond(packet, False)
            assert _facts(cached) == _facts(fresh.cache.entries[parsed[0]]), (change, packet)


@settings(max_examples=60, deadline=None)
@given(st.lists(changes, min_size=1, max_size=15), st.integers(0, 0xFFFF))
def test_every_reply_to_a_query_seen_before_equals_a_fresh_one(steps: list[Change],
                                                                qid: int) -> None:
    """Queries seen before are answered by their exact bytes: after every change the reply
    (every byte but the id, which is the new query's) is the one a fresh server gives."""
    engine = _fresh(_apex_zone(), _Middle())
    for change, fresh in _each_change(engine, steps, _Middle):
        for packet in QUERIES:
            asked = qid.to_bytes(2, "big") + packet[2:]
            reply = engine.respond(asked, False)
            assert reply is not None and reply[:2] == asked[:2]
            assert reply == fresh.respond(asked, False), (change, packet)
