"""The reply cache: wire replies by (lower-case qname, qtype, EDNS), invalidated by zone name.

Each entry remembers the zone names its answer was computed from.  A change to a record set
at name N drops every entry that read N (an alias change drops the alias's entries, a tree
change drops every alias entry that named the tree), and every change drops the entries
that carry the SOA serial (negative answers, the apex SOA).  So no change leaves a stale reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Counter

MAX_ENTRIES = 50_000
"""Beyond this many entries (a flood of random names) the cache starts afresh."""


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
    total: int
    counter: Counter
    """The ``dnsrace_dns_queries_total`` child for this reply's rcode and qtype."""
    empty_counter: Counter | None
    qname: str
    generation: int | None
    address_count: int


class ReplyCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.entries: dict[bytes, CachedReply] = {}
        self._by_name: dict[str, set[bytes]] = {}
        self._serial_dependent: set[bytes] = set()
        self.max_entries = max_entries

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
        entries = self.entries
        dropped = 0
        for key in self._serial_dependent:
            dropped += entries.pop(key, None) is not None
        self._serial_dependent.clear()
        for name in changed_names:
            for key in self._by_name.pop(name, ()):
                dropped += entries.pop(key, None) is not None
        return dropped

    def clear(self) -> None:
        self.entries.clear()
        self._by_name.clear()
        self._serial_dependent.clear()

    def __len__(self) -> int:
        return len(self.entries)
