"""The reply cache: wire replies by (lower-case qname, qtype, EDNS), invalidated by zone name.

Each entry remembers the zone names its answer was computed from.  A change to a record set
at name N drops every entry that read N (an alias change drops the alias's entries, a tree
change drops every alias entry that named the tree), and every change drops the entries
that carry the SOA serial (negative answers, the apex SOA).  So no change leaves a stale reply.

In front of it, UDP queries seen before are answered by their exact bytes (all but the id):
the query's flags, question and OPT record fix everything in the reply but the id and the
weighted choice, so a :class:`Prepared` reply keyed by ``query[2:]`` skips parsing.  A dropped
entry is marked dead, and its prepared replies with it.

A :class:`CacheMirror` (the compiled UDP fast path, ``dns_server.fastpath``) is told of every
prepared reply, dropped entry and clearing, in that order with the cache's own changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from dns_server.metrics import Tally

MAX_ENTRIES = 50_000
"""Beyond this many entries (a flood of random names) the cache starts afresh."""
MAX_PREPARED = 100_000
"""Beyond this many prepared replies (names in mixed case, many EDNS variants) they start afresh."""


@dataclass(slots=True, eq=False)
class CachedReply:
    """A ready reply and what the hot path needs besides it: metrics and the hook's facts."""

    head: tuple[bytes, bytes]
    """Header bytes 2..12 for RD clear / set."""
    tails: tuple[bytes, ...]
    size: int
    trunc_head: tuple[bytes, bytes]
    trunc_tail: bytes
    cumulative: tuple[int, ...] | None
    """Cumulative weights of the tails; None when there is one tail only."""
    counter: Tally
    """``dnsrace_dns_queries_total`` for this reply's rcode and qtype."""
    empty_counter: Tally | None
    qname: str
    generation: int | None
    address_count: int
    live: bool = True
    """False once dropped from the cache: prepared replies built on it are stale."""
    served: int = 0
    """Replies given from this entry (the answer sampler reads it by time, see
    :meth:`dns_server.engine.ReplyEngine.take_served`)."""
    sampled: int = 0
    """``served`` when the sampler last read it."""
    born_ms: int = 0
    """When the entry was built: by the query that first got this answer, so its time."""
    slot: int = -1
    """Its slot in the cache's mirror, once a prepared reply of it is there; else -1."""


@dataclass(slots=True, eq=False)
class Prepared:
    """A cached reply as one exact query asked for it: header and question ready."""

    entry: CachedReply
    head: bytes
    """Header bytes 2..12 (RD as asked, TC if truncated) and the question as asked."""
    truncated: bool
    """The whole reply is over the client's UDP size: ``entry.trunc_tail`` follows."""


class CacheMirror(Protocol):
    """Another answerer of the prepared replies, kept exactly as fresh as the cache."""

    def prepared(self, query_tail: bytes, prepared: Prepared) -> None: ...

    def unprepared(self) -> None:
        """Every prepared reply is forgotten (the entries stay live)."""

    def dropped(self, entry: CachedReply) -> None:
        """``entry`` is dead: it answers no more, and its last answers are counted."""

    def cleared(self, reloaded: bool) -> None:
        """Every entry is dead: the zone was reloaded, or the cache was full."""

    def fold(self) -> None:
        """Count the answers given since the last fold in the entries' tallies."""

    def take_stale(self) -> list[tuple[str, bytes]]:
        """(qname, query tail) of the prepared replies dropped since the last call that had
        been given: the engine prepares them again for the changed zone."""
        return []


class ReplyCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.entries: dict[bytes, CachedReply] = {}
        self.prepared: dict[bytes, Prepared] = {}
        """UDP queries' bytes after the id, to their reply (see the module's doc)."""
        self._by_name: dict[str, set[bytes]] = {}
        self._serial_dependent: set[bytes] = set()
        self.max_entries = max_entries
        self.mirror: CacheMirror | None = None

    def put(self, key: bytes, entry: CachedReply, depends_on: Iterable[str],
            serial_dependent: bool) -> None:
        if len(self.entries) >= self.max_entries:
            self.clear()
        self.entries[key] = entry
        for name in depends_on:
            self._by_name.setdefault(name, set()).add(key)
        if serial_dependent:
            self._serial_dependent.add(key)

    def invalidate(self, changed_names: Iterable[str]) -> int:
        """Drop what the changed names can affect and everything holding the serial."""
        dropped = 0
        for key in self._serial_dependent:
            dropped += self._drop(key)
        self._serial_dependent.clear()
        for name in changed_names:
            for key in self._by_name.pop(name, ()):
                dropped += self._drop(key)
        return dropped

    def _drop(self, key: bytes) -> bool:
        entry = self.entries.pop(key, None)
        if entry is None:
            return False
        entry.live = False
        if self.mirror is not None:
            self.mirror.dropped(entry)
        return True

    def prepare(self, query_tail: bytes, prepared: Prepared) -> None:
        """Answer the UDP query whose bytes after the id are ``query_tail`` with ``prepared``."""
        if len(self.prepared) >= MAX_PREPARED:
            self.prepared.clear()
            if self.mirror is not None:
                self.mirror.unprepared()
        self.prepared[query_tail] = prepared
        if self.mirror is not None:
            self.mirror.prepared(query_tail, prepared)

    def fold(self) -> None:
        """Count what the mirror answered (before the tallies are read)."""
        if self.mirror is not None:
            self.mirror.fold()

    def clear(self, reloaded: bool = False) -> None:
        """Drop every entry: the zone was ``reloaded``, or (by default) the cache was full."""
        for entry in self.entries.values():
            entry.live = False
        self.entries.clear()
        self.prepared.clear()
        self._by_name.clear()
        self._serial_dependent.clear()
        if self.mirror is not None:
            self.mirror.cleared(reloaded)

    def __len__(self) -> int:
        return len(self.entries)

