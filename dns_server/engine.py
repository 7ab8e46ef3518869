"""From query bytes to reply bytes: the hot path, the slow path, metrics and the answer hook.

No sockets here: the UDP and TCP protocols hand in bytes and send back what this returns.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

from dns_server import metrics
from dns_server.answer import (
    AnswerPolicy,
    Question,
    Resolution,
    choose_variant,
    cumulative_weights,
    resolve,
)
from dns_server.cache import CachedReply, Prepared, ReplyCache
from dns_server.encode import WireReply, encode_full, encode_reply, header_only
from dns_server.errors import DroppedQuery, MalformedReason, QueryError
from dns_server.protocol import MAX_TCP_MESSAGE, EdnsKind, MetricQType, QType, Rcode, metric_qtype
from dns_server.wire import cache_key, fast_parse, parse_slow, question_of_key
from dns_server.zone import Zone
from services.core import names
from services.core.clock import Clock
from services.runtime.clock import WALL_CLOCK

log = logging.getLogger(__name__)

MAX_UNREAD = 10_000
"""Cached replies kept for :meth:`ReplyEngine.take_served` at most; past it, the dropped ones
go unread (only when nothing calls it: the sampler reads them every 0.1 s)."""
SAMPLED_NAMES = frozenset(names.NAMED_ENDPOINTS)
"""Names whose answers :meth:`ReplyEngine.take_served` reports (the named endpoints)."""


@dataclass(frozen=True, slots=True)
class ServedAnswer:
    """Answers given from one cached reply since the last :meth:`ReplyEngine.take_served`.

    ``qname`` is lower case without the final dot; ``generation`` is the plan generation the
    alias behind the answer names (also for an empty answer), None for other names;
    ``address_count`` is the number of A records in the answer (0 for an empty answer).
    """

    qname: str
    generation: int | None
    address_count: int
    count: int
    """How many times it was given since the last read."""
    first: bool
    """Never read before: the answer was first given at ``born_ms``."""
    born_ms: int


class ReplyEngine:
    """Answers queries from an in-memory zone through a cache of wire-format replies."""

    def __init__(self, policy: AnswerPolicy, rng: random.Random | None = None,
                 cache: ReplyCache | None = None, clock: Clock = WALL_CLOCK,
                 sampled_names: frozenset[str] = SAMPLED_NAMES) -> None:
        self.policy = policy
        self.zone: Zone | None = None
        self.cache = cache if cache is not None else ReplyCache()
        self.clock = clock
        self.sampled_names = sampled_names
        self._sampled: list[CachedReply] = []
        """Cached replies for the sampled names, live or dropped since the last read."""
        self._random = (rng or random.Random()).random
        self._internal_errors = 0

    def take_served(self) -> list[ServedAnswer]:
        """The answers for the sampled names given since the last call, one per cached reply
        in the order the replies were built; forgets the replies dropped from the cache.

        The query path only counts (``entry.served += 1``): this is how the answer sampler
        learns what clients were told, by time, at no cost per query.
        """
        self.cache.fold()
        out: list[ServedAnswer] = []
        keep: list[CachedReply] = []
        for entry in self._sampled:
            served = entry.served
            if served != entry.sampled:
                out.append(ServedAnswer(entry.qname, entry.generation, entry.address_count,
                                        served - entry.sampled, entry.sampled == 0,
                                        entry.born_ms))
                entry.sampled = served
            if entry.live:
                keep.append(entry)
        self._sampled = keep
        return out

    def set_zone(self, zone: Zone) -> None:
        """Answer from a new zone (after a full snapshot): every cached reply goes (with a
        mirror, those that had been given are prepared again, as after a change)."""
        self.zone = zone
        self.cache.clear(reloaded=True)
        self._prepare_stale()

    def zone_changed(self, changed_names: Iterable[str]) -> None:
        """Record sets at these names of the zone changed (and so did the serial).

        With a mirror (the compiled fast path), the prepared replies it drops that had been
        given are prepared again at once for the changed zone (a bounded number of them),
        so the next query for them is answered in C, not queued behind the event loop as a
        miss. Not those of the sampled names: their reply is built by the query that first
        gets it, whose time is the answer sample's (:class:`ServedAnswer`).
        """
        self.cache.invalidate(changed_names)
        self._prepare_stale()

    def _prepare_stale(self) -> None:
        mirror = self.cache.mirror
        if mirror is None:
            return
        for qname, query_tail in mirror.take_stale():
            if qname not in self.sampled_names:
                self._prepare_again(query_tail)

    def _prepare_again(self, query_tail: bytes) -> None:
        """Prepare the reply to a UDP query seen before (its bytes after the id), uncounted."""
        try:
            data = b"\x00\x00" + query_tail
            parsed = fast_parse(data)
            if parsed is None:
                return
            key, qend, limit = parsed
            entry = self._entry_for(key)
            if entry is not None:
                self.cache.prepare(query_tail,
                                   _prepare(entry, data[12:qend], data[2] & 1, limit))
        except Exception:
            self._failed("failed to prepare a reply again")

    def respond(self, data: bytes, tcp: bool) -> bytes | None:
        """The reply to one query (``bytes``, as sockets give), or None to drop it. Never raises."""
        try:
            if not tcp:
                prepared = self.cache.prepared.get(data[2:])
                if prepared is not None and prepared.entry.live:
                    return self._reply(prepared, data)
            parsed = fast_parse(data)
            if parsed is None:
                return self._slow(data, tcp)
            key, qend, limit = parsed
            entry = self._entry_for(key)
            if entry is None:
                question, edns = question_of_key(key)
                return self._servfail(data, question, edns, data[12:qend])
            prepared = _prepare(entry, data[12:qend], data[2] & 1, tcp or limit)
            if not tcp:
                self.cache.prepare(data[2:], prepared)
            return self._reply(prepared, data)
        except Exception:
            self._failed(f"failed to answer a {len(data)}-byte query")
            return None

    def _entry_for(self, key: bytes) -> CachedReply | None:
        """The cached reply to a parsed query's key, resolved and cached on a miss; None when
        there is no zone yet."""
        entry = self.cache.entries.get(key)
        if entry is None:
            question, edns = question_of_key(key)
            entry = self._entry(question, edns, key)
        return entry

    def _failed(self, what: str) -> None:
        """A bug met while answering (called from its ``except``): counted, logged 1, 2, 4,
        8... times, so a bug hit by every query cannot flood the log."""
        self._internal_errors += 1
        metrics.INTERNAL_ERRORS.inc()
        if self._internal_errors & (self._internal_errors - 1) == 0:
            log.exception("%s (%d such failures so far)", what, self._internal_errors)

    def _reply(self, prepared: Prepared, data: bytes) -> bytes:
        """The prepared reply with the query's id; one of the weighted variants."""
        entry = prepared.entry
        entry.counter.n += 1
        entry.served += 1
        if entry.empty_counter is not None:
            entry.empty_counter.n += 1
        if prepared.truncated:
            return data[:2] + prepared.head + entry.trunc_tail
        if entry.cumulative is None:
            return data[:2] + prepared.head + entry.tails[0]
        return data[:2] + prepared.head + entry.tails[
            choose_variant(entry.cumulative, self._random())]

    def _entry(self, question: Question, edns: EdnsKind, key: bytes | None) -> CachedReply | None:
        """Resolve, encode and cache the reply to a question; None when there is no zone yet."""
        zone = self.zone
        if zone is None:
            return None
        resolution = resolve(zone, question, self.policy)
        wire = encode_reply(question, resolution, edns)
        if wire.size > MAX_TCP_MESSAGE:
            log.error("reply to %s is %d bytes, more than TCP can carry", question.name,
                      wire.size)
            return None
        entry = _cached(question, resolution, wire)
        if key is not None:
            self.cache.put(key, entry, resolution.depends_on, resolution.serial_dependent)
        else:
            entry.live = False  # used for this query only: read once by the sampler
        if question.name in self.sampled_names:
            entry.born_ms = self.clock.now_ms()
            if len(self._sampled) >= MAX_UNREAD:  # nobody reads them (no sampler)
                self._sampled = [e for e in self._sampled if e.live]
            self._sampled.append(entry)
        return entry

    def _slow(self, data: bytes, tcp: bool) -> bytes | None:
        try:
            query = parse_slow(data)
        except DroppedQuery as e:
            metrics.MALFORMED.labels(e.reason).inc()
            return None
        except QueryError as e:
            metrics.MALFORMED.labels(e.reason).inc()
            rcode = e.rcode or Rcode.FORMERR
            metrics.QUERIES.labels(rcode.name, MetricQType.OTHER).inc()
            return header_only(data, rcode)
        question = query.question
        if query.bad_edns_version:
            metrics.MALFORMED.labels(MalformedReason.BADVERS).inc()
            metrics.QUERIES.labels(Rcode.BADVERS.name, metric_qtype(question.qtype)).inc()
            reply = encode_full(question, Rcode.BADVERS, query.edns)
            return data[:2] + bytes((reply[2] | query.rd,)) + reply[3:]
        entry = self._entry(question, query.edns, cache_key(question, query.edns))
        if entry is None:
            return self._servfail(data, question, query.edns, query.question_bytes)
        return self._reply(_prepare(entry, query.question_bytes, query.rd,
                                    tcp or query.udp_limit), data)

    def _servfail(self, data: bytes, question: Question, edns: EdnsKind,
                  question_bytes: bytes) -> bytes:
        """No zone loaded yet, or an answer too large to encode: SERVFAIL, so clients retry."""
        metrics.QUERIES.labels(Rcode.SERVFAIL.name, metric_qtype(question.qtype)).inc()
        reply = encode_full(question, Rcode.SERVFAIL, edns)
        return (data[:2] + bytes((reply[2] | (data[2] & 1),)) + reply[3:12] + question_bytes
                + reply[12 + len(question_bytes):])


def _prepare(entry: CachedReply, question: bytes, rd: int, limit: int | bool) -> Prepared:
    """The entry's reply to a query asking ``question`` with RD ``rd``; TC if over ``limit``.

    ``limit`` is True over TCP (no limit), else the UDP size the client accepts.
    """
    if limit is True or entry.size <= limit:
        return Prepared(entry, entry.head[rd] + question, False)
    return Prepared(entry, entry.trunc_head[rd] + question, True)


def _cached(question: Question, resolution: Resolution, wire: WireReply) -> CachedReply:
    variants = resolution.variants
    cumulative = cumulative_weights(variants) if len(variants) > 1 else None
    empty = None
    if resolution.empty_alias and resolution.endpoint is not None and question.qtype == QType.A \
            and not resolution.endpoint.startswith(names.ROLLBACK_PREFIX):
        empty = metrics.EMPTY_ANSWERS.labels(names.endpoint_label(resolution.endpoint)).tally()
    return CachedReply(
        head=wire.head, tails=wire.tails, size=wire.size, trunc_head=wire.trunc_head,
        trunc_tail=wire.trunc_tail, cumulative=cumulative,
        counter=metrics.QUERIES.labels(resolution.rcode.name,
                                       metric_qtype(question.qtype)).tally(),
        empty_counter=empty, qname=question.name, generation=resolution.generation,
        address_count=resolution.address_count,
    )
