"""UDP through the compiled fast path: replies prepared before are answered on a C thread.

No Python server can spend as little CPU per query as NSD: the cheapest Python responder
there is (a dict lookup per query, ``bench/floor_server.py``) uses 1.26-1.41x NSD's, all of
it the interpreter's work around each wake-up (docs/benchmarks.md). So the UDP socket is read
by a thread of ``dns_server._fastpath`` (C, no GIL), which answers every query whose exact
bytes (after the id) it holds a prepared reply for, the way :class:`dns_server.cache.ReplyCache`
answers them in Python: same head, same weighted choice of variants. Everything else (a new
question, garbage, a reply too large) is a *miss*: queued, and answered here on the event loop
by :meth:`dns_server.engine.ReplyEngine.respond`, which prepares it for the C side in turn
(this class mirrors the reply cache: :class:`dns_server.cache.CacheMirror`).

Correctness stays with Python: a cached reply dropped because the zone changed under it
closes its slot in C before the change is live, and from then on its records are misses.
Answers given in C are counted per cached reply and folded into the same tallies the Python
path counts (queries by rcode and type, empty answers, what the answer sampler reads) before
/metrics is rendered and before the sampler reads.

The extension is optional (pyproject.toml): where it was not built, :func:`available` is
False and the server reads UDP from Python (``dns_server.udp_batch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct

from dns_server.cache import CachedReply, Prepared
from dns_server.metrics import HotCounter
from dns_server.udp_batch import BATCHED_DATAGRAMS, BATCHES, Respond

log = logging.getLogger(__name__)

try:
    from dns_server import _fastpath
except ImportError:  # not built: no compiler or Python headers at install time
    _fastpath = None  # type: ignore[assignment]

FAST_ANSWERS = HotCounter("dnsrace_dns_fast_path_answers",
                          "UDP queries answered on the compiled fast path's thread (the rest of "
                          "dnsrace_dns_queries_total was answered in Python)")
MISSES_DROPPED = HotCounter("dnsrace_dns_fast_path_misses_dropped",
                            "UDP queries dropped because more than 16,384 were waiting for the "
                            "Python engine (a flood of new questions)")

RECEIVE_TIMEOUT_S = 0.2
"""The thread's longest wait in ``recvmmsg`` before it looks whether it must stop."""
MAX_STALE = 2_000
"""Query tails kept to prepare again after a change or reload at most (the rest wait for
their query): a bound on the Python work a change adds to the event loop's turn."""
MISSES_PER_TURN = 256
"""Misses answered per event-loop turn; more wait for the next turn (the loop stays fair)."""


def available() -> bool:
    """True where ``dns_server._fastpath`` was built."""
    return _fastpath is not None


def _count(entry: CachedReply, answers: int) -> None:
    """Answers given in C from ``entry``, added where the Python path counts them."""
    entry.counter.n += answers
    entry.served += answers
    if entry.empty_counter is not None:
        entry.empty_counter.n += answers


class Mirror:
    """The reply cache's mirror in C (:class:`dns_server.cache.CacheMirror`): a slot per cached
    reply with prepared replies, its records, and the answers given from them counted back."""

    def __init__(self, server: _fastpath.Server) -> None:
        self.server = server
        self._slots: dict[int, tuple[CachedReply, list[bytes]]] = {}
        """Each open slot's cached reply and the query tails put for it."""
        self._stale: list[tuple[str, bytes]] = []
        """(qname, query tail) of replies dropped since :meth:`take_stale` that had answers."""
        self._batches, self._datagrams = BATCHES.tally(), BATCHED_DATAGRAMS.tally()
        self._answers, self._dropped = FAST_ANSWERS.tally(), MISSES_DROPPED.tally()
        self._seen = {"receive_calls": 0, "datagrams": 0, "hits": 0, "dropped_misses": 0}

    def prepared(self, query_tail: bytes, prepared: Prepared) -> None:
        entry = prepared.entry
        if entry.slot < 0:
            entry.slot = self.server.open()
            self._slots[entry.slot] = (entry, [])
        self._slots[entry.slot][1].append(query_tail)
        if prepared.truncated:
            self.server.put(query_tail, entry.slot, prepared.head, (entry.trunc_tail,), None)
        else:
            self.server.put(query_tail, entry.slot, prepared.head, entry.tails,
                            entry.cumulative)

    def unprepared(self) -> None:
        self.server.forget()
        for _, tails in self._slots.values():
            tails.clear()

    def dropped(self, entry: CachedReply) -> None:
        if entry.slot >= 0:
            _count(entry, self.server.close(entry.slot))
            _, tails = self._slots.pop(entry.slot)
            if entry.served:
                self._keep_stale(entry, tails)
            entry.slot = -1

    def cleared(self, reloaded: bool) -> None:
        """Every entry is dead; after a reload the given ones are kept to prepare again (not
        when the cache was full: a flood of new names would be prepared again)."""
        for slot, answers in self.server.reset():
            _count(self._slots[slot][0], answers)
        for entry, tails in self._slots.values():
            if reloaded and entry.served:
                self._keep_stale(entry, tails)
            entry.slot = -1
        self._slots.clear()

    def _keep_stale(self, entry: CachedReply, tails: list[bytes]) -> None:
        room = MAX_STALE - len(self._stale)
        self._stale.extend((entry.qname, tail) for tail in tails[:max(room, 0)])

    def take_stale(self) -> list[tuple[str, bytes]]:
        """The (qname, query tail) of every prepared reply dropped since the last call whose
        cached reply had been given: the queries to prepare again for the changed zone."""
        stale, self._stale = self._stale, []
        return stale

    def fold(self) -> None:
        """Add the answers given in C since the last fold to the Python tallies."""
        for slot, answers in self.server.counts():
            _count(self._slots[slot][0], answers)
        stats, seen = self.server.stats(), self._seen
        for name, tally in (("receive_calls", self._batches), ("datagrams", self._datagrams),
                            ("hits", self._answers), ("dropped_misses", self._dropped)):
            tally.n += stats[name] - seen[name]
            seen[name] = stats[name]


class FastPath:
    """Answers a bound UDP socket: prepared replies on a C thread, misses with ``respond``."""

    def __init__(self, sock: socket.socket, respond: Respond, batch: int = 64) -> None:
        if not available():
            raise OSError("dns_server._fastpath was not built (no C compiler or Python "
                          "headers when dnsrace was installed)")
        self.sock = sock
        self._server = _fastpath.Server(sock.fileno(), batch)
        self.mirror = Mirror(self._server)
        self._respond = respond
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed: asyncio.Future[None] | None = None

    def start(self) -> None:
        self.sock.settimeout(None)  # the thread blocks in recvmmsg, for RECEIVE_TIMEOUT_S at most
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                             struct.pack("ll", 0, int(RECEIVE_TIMEOUT_S * 1_000_000)))
        self._loop = asyncio.get_running_loop()
        self.closed = self._loop.create_future()
        self._loop.add_reader(self._server.miss_fd, self._missed)
        self._server.start()

    def close(self) -> None:
        """Stop the thread, count its last answers, close the socket."""
        if self._loop is None or self.closed is None or self.closed.done():
            return
        self._loop.remove_reader(self._server.miss_fd)
        self._server.stop()
        self.mirror.cleared(reloaded=False)
        self.mirror.fold()
        self.sock.close()
        self.closed.set_result(None)

    def _missed(self) -> None:
        """Answer the queued misses (at most :data:`MISSES_PER_TURN` this turn)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._server.miss_fd, 8)
        misses = self._server.misses(MISSES_PER_TURN)
        respond, send = self._respond, self._server.send
        for data, peer in misses:
            reply = respond(data, False)
            if reply is not None:
                send(reply, peer)
        if len(misses) == MISSES_PER_TURN and self._loop is not None:
            self._loop.call_soon(self._missed)

    def stats(self) -> dict[str, int]:
        """Totals since the start: receive calls, datagrams, hits, dropped misses, records."""
        return dict(self._server.stats())
