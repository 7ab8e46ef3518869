"""Sampled DNS answers into the history, so ``dnsrace check`` sees what clients were told.

Answers for the named endpoints (once a plan has been applied to them) are recorded when
what they say changes (generation or address count), and otherwise at most once per
``interval_s`` per name. Nothing runs per query: the query path only counts the replies
given from each cached reply, and a timer reads those counts every ``interval_s``
(:meth:`dns_server.engine.ReplyEngine.take_served`). An answer that changed is stamped with
the time it was first given (the cached reply is built by the query that first gets it);
a repeat with the time it was read. Writing happens later still, from a bounded queue, all
that is waiting in one round-trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import Counter

from dns_server.engine import ServedAnswer
from services.core import events, names
from services.core.clock import Clock
from services.runtime.clock import WALL_CLOCK

DROPPED = Counter("dnsrace_dns_samples_dropped_total",
                  "Sampled answers not recorded because the history writer fell behind")
_NAMED = frozenset(names.NAMED_ENDPOINTS)

TakeServed = Callable[[], list[ServedAnswer]]


def answer_times(served: list[ServedAnswer], now_ms: int) -> list[int]:
    """When each read answer is stamped: an answer never read before at the time it was first
    given; a repeat at ``now_ms``, but never after the first answer of a reply built later for
    the same name (a reply is dropped before its successor is built: its repeats came first,
    so a name's samples keep the order clients saw)."""
    times = [0] * len(served)
    successor: dict[str, int] = {}
    for i in range(len(served) - 1, -1, -1):
        answer = served[i]
        if answer.first:
            times[i] = answer.born_ms
            successor[answer.qname] = min(answer.born_ms, successor.get(answer.qname, now_ms))
        else:
            times[i] = min(now_ms, successor.get(answer.qname, now_ms))
    return times


class AnswerSampler:
    def __init__(self, sink: events.HistorySink, take_served: TakeServed,
                 interval_s: float = 0.1, clock: Clock = WALL_CLOCK,
                 capacity: int = 1000) -> None:
        self.sink = sink
        self.take_served = take_served
        self.interval_s = interval_s
        self.interval_ms = interval_s * 1000
        self.clock = clock
        self.queue: asyncio.Queue[events.DnsAnswer] = asyncio.Queue(maxsize=capacity)
        self._last: dict[str, tuple[int, int | None, int]] = {}

    def sample(self) -> int:
        """Queue what was answered since the last call; how many samples were queued."""
        now = self.clock.now_ms()
        queued = 0
        served = self.take_served()
        for answer, at in zip(served, answer_times(served, now), strict=True):
            qname, generation = answer.qname, answer.generation
            if qname not in _NAMED or generation is None:
                continue  # not an endpoint, or no plan applied yet (the cluster is starting)
            last = self._last.get(qname)
            if last is not None and last[1:] == (generation, answer.address_count) and (
                    at - last[0] < self.interval_ms):
                continue
            self._last[qname] = (at, generation, answer.address_count)
            event = events.DnsAnswer(at_ms=at, endpoint=qname, generation=generation,
                                     addresses=answer.address_count)
            try:
                self.queue.put_nowait(event)
                queued += 1
            except asyncio.QueueFull:
                DROPPED.inc()
        return queued

    async def sampling(self) -> None:
        """Sample every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.sample()

    async def drain(self) -> None:
        """Write queued samples to the history until cancelled: every sample waiting when the
        writer is free, in one round-trip (a read queues up to one per sampled name)."""
        while True:
            waiting = [await self.queue.get()]
            while not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            await self.sink.record_many(waiting)
