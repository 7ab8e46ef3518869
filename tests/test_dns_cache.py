"""The reply cache never serves a stale reply, whatever sequence of changes hits the zone."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from dnslib import EDNS0, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from dns_server import fastpath, metrics
from dns_server.answer import AnswerPolicy
from dns_server.cache import MAX_ENTRIES, CachedReply, ReplyCache
from dns_server.engine import ReplyEngine
from dns_server.fastpath import _fastpath
from dns_server.server import DnsServer
from dns_server.wire import fast_parse
from dns_server.zone import Zone
from services.config import ConfigError, load
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


@pytest.mark.skipif(not fastpath.available(), reason="dns_server._fastpath was not built "
                    "(needs gcc and the Python headers at install)")
@settings(max_examples=30, deadline=None)
@given(st.lists(changes, min_size=1, max_size=15))
def test_the_compiled_mirror_answers_only_what_a_fresh_engine_would(steps: list[Change]) -> None:
    """The C side of the fast path, fed by the cache as the server feeds it: after every
    change, every query it still answers gets a reply a fresh engine would give."""
    engine = _fresh(_apex_zone())
    mirror = fastpath.Mirror(_fastpath.Server(-1, 1))
    engine.cache.mirror = mirror
    answered = 0
    for change, fresh in _each_change(engine, steps, _Middle):
        for packet in QUERIES:
            reply = mirror.server.answer(packet)
            if reply is None:
                continue
            answered += 1
            fresh.respond(packet, False)
            prepared = fresh.cache.prepared[packet[2:]]
            tails = ((prepared.entry.trunc_tail,) if prepared.truncated
                     else prepared.entry.tails)
            assert reply in {packet[:2] + prepared.head + tail for tail in tails}, change
    assert answered > 0  # a change drops only what it touches


@pytest.mark.skipif(not fastpath.available(), reason="dns_server._fastpath was not built "
                    "(needs gcc and the Python headers at install)")
def test_after_a_change_the_replies_that_were_given_are_ready_in_c_uncounted() -> None:
    """A flip drops the cell's reply; the engine prepares it again for the new tree at once,
    so C answers the next query itself. Not the regional name's (its answer is sampled), and
    not a reply nobody was given since it was prepared."""
    zone = _apex_zone()
    cell, regional = ENDPOINTS[1], ENDPOINTS[0]

    def flip(endpoint: str, generation: int) -> None:
        record = alias_record(endpoint, Alias(names.tree_name(generation, endpoint), generation))
        update = zone.set(record.key, record.value)
        zone.serial += 1
        engine.zone_changed({update.name})

    for endpoint in (0, 1):
        for generation in (1, 2):
            tree = _tree(endpoint, generation, [generation - 1])
            zone.set(tree.key, tree.value)
    engine = _fresh(zone, _Middle())
    engine.cache.mirror = mirror = fastpath.Mirror(_fastpath.Server(-1, 1))
    flip(cell, 1)
    flip(regional, 1)
    asked = {name: bytes(DNSRecord.question(name, "A").pack()) for name in (cell, regional)}
    for packet in asked.values():
        engine.respond(packet, False)  # a miss in C, answered and prepared in Python
        assert mirror.server.answer(packet) is not None
    queries = metrics.QUERIES.labels("NOERROR", "A").tally()
    engine.cache.fold()
    before = queries.n

    flip(cell, 2)
    flip(regional, 2)
    engine.cache.fold()
    assert queries.n == before  # preparing again answers nobody
    reply = mirror.server.answer(asked[cell])
    assert reply is not None and b"\x7f\x00\x0a\x02" in reply  # 127.0.10.2: generation 2's
    assert reply == _fresh(zone, _Middle()).respond(asked[cell], False)
    assert mirror.server.answer(asked[regional]) is None  # the query that first gets it builds it
    engine.cache.fold()
    assert queries.n == before + 2  # the answer C gave, and the fresh engine's

    flip(cell, 1)  # generation 2's reply was given (by C): generation 1's is ready
    assert b"\x7f\x00\x0a\x01" in (mirror.server.answer(asked[cell]) or b"")
    flip(cell, 2)
    flip(cell, 1)  # generation 2's reply was never given: left for the query that asks
    assert mirror.server.answer(asked[cell]) is None

    for packet in asked.values():
        engine.respond(packet, False)
    engine.set_zone(zone)  # a reload (a resync): every cached reply goes, the given ones
    assert mirror.server.answer(asked[cell]) is not None  # are ready again at once
    assert mirror.server.answer(asked[regional]) is None


@pytest.mark.skipif(not fastpath.available(), reason="dns_server._fastpath was not built "
                    "(needs gcc and the Python headers at install)")
def test_a_full_cache_leaves_nothing_to_prepare_again() -> None:
    """A one-entry cache starts afresh on every new question: what it drops is not prepared
    again at the next change (a flood of new names would be), and nothing piles up."""
    engine = ReplyEngine(AnswerPolicy(ttl_s=5), random.Random(0), ReplyCache(max_entries=1))
    engine.set_zone(_apex_zone())
    engine.cache.mirror = mirror = fastpath.Mirror(_fastpath.Server(-1, 1))
    for packet in QUERIES[:40]:
        engine.respond(packet, False)
    assert len(engine.cache) == 1 and mirror.take_stale() == []
    assert mirror.server.stats()["records"] == 1  # the last question's, nothing older


def test_an_engine_keeps_the_cache_it_is_given_even_empty() -> None:
    # An empty ReplyCache is falsy (it has a length): ``cache or ReplyCache()`` dropped it.
    cache = ReplyCache(max_entries=1)
    assert ReplyEngine(AnswerPolicy(ttl_s=5), random.Random(0), cache).cache is cache


def test_a_one_entry_cache_resolves_every_query_anew_with_the_same_replies() -> None:
    """DNSRACE_DNS_CACHE_ENTRIES=1 (the benchmarks' cache-miss path): every query is a miss,
    the cache never holds more than one reply, and the replies are a full cache's."""
    steps = [(_tree(0, 1, [0, 1]).key, _tree(0, 1, [0, 1]).value),
             (alias_record(ENDPOINTS[0], Alias(names.tree_name(1, ENDPOINTS[0]), 1)).key,
              alias_record(ENDPOINTS[0], Alias(names.tree_name(1, ENDPOINTS[0]), 1)).value)]
    zone = _apex_zone()
    for key, value in steps:
        zone.set(key, value)
    full = _fresh(zone, _Middle())
    one = ReplyEngine(AnswerPolicy(ttl_s=5), _Middle(), ReplyCache(max_entries=1))
    one.set_zone(zone)
    built: list[CachedReply] = []  # kept alive: no two can share an id
    for _ in range(2):
        for packet in QUERIES:
            assert one.respond(packet, False) == full.respond(packet, False), packet
            assert len(one.cache.entries) == 1 and len(one.cache.prepared) <= 1
            built.append(next(iter(one.cache.entries.values())))
    assert len({id(entry) for entry in built}) == 2 * len(QUERIES)  # each one built anew


def test_the_servers_cache_holds_dnsrace_dns_cache_entries_replies() -> None:
    assert DnsServer(load({})).engine.cache.max_entries == MAX_ENTRIES
    server = DnsServer(load({"DNSRACE_DNS_CACHE_ENTRIES": "1"}), redis_url="redis://127.0.0.1:1")
    assert server.engine.cache.max_entries == 1
    with pytest.raises(ConfigError, match="DNSRACE_DNS_CACHE_ENTRIES must be >= 1"):
        load({"DNSRACE_DNS_CACHE_ENTRIES": "0"})
