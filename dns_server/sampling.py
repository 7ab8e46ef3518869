"""Sampled DNS answers into the history, so ``dnsrace check`` sees what clients were told.

Answers for the named endpoints (once a plan has been applied to them) are recorded when
what they say changes (generation or address count), and otherwise at most once per
``interval_s`` per name. Recording happens off
the hot path: the query handler only puts an event on a bounded queue, stamped with the time
the answer was given (``clock``), not the later time it is written.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from services.core import events, names
from services.core.clock import Clock
from services.runtime.clock import WALL_CLOCK

DROPPED = Counter("dnsrace_dns_samples_dropped_total",
                  "Sampled answers not recorded because the history writer fell behind")
_NAMED = frozenset(names.NAMED_ENDPOINTS)


class AnswerSampler:
    def __init__(self, sink: events.HistorySink, interval_s: float = 0.1,
                 clock: Clock = WALL_CLOCK, capacity: int = 1000) -> None:
        self.sink = sink
        self.interval_ms = interval_s * 1000
        self.clock = clock
        self.queue: asyncio.Queue[events.DnsAnswer] = asyncio.Queue(maxsize=capacity)
        self._last: dict[str, tuple[int, int | None, int]] = {}

    def __call__(self, qname: str, generation: int | None, address_count: int) -> None:
        if qname not in _NAMED or generation is None:
            return  # not an endpoint, or no plan applied yet (the cluster is starting)
        now = self.clock.now_ms()
        last = self._last.get(qname)
        if last is not None and last[1:] == (generation, address_count) and (
                now - last[0] < self.interval_ms):
            return
        self._last[qname] = (now, generation, address_count)
        event = events.DnsAnswer(at_ms=now, endpoint=qname, generation=generation,
                                  addresses=address_count)
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            DROPPED.inc()

    async def drain(self) -> None:
        """Write queued samples to the history until cancelled."""
        while True:
            await self.sink.record(await self.queue.get())
