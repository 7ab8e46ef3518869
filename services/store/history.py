"""Domain events and the history they make.

Every process records what it did as frozen dataclasses; the history is a Redis stream that
``dnsrace check`` and the reports read. Events speak the incident's words, never wire formats.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from services.core.clock import Clock
from services.core.events import UNSTAMPED, Event, decode

log = logging.getLogger(__name__)
HISTORY_ERRORS = Counter("dnsrace_history_errors_total",
                         "History events that could not be recorded (Redis unreachable)")


_XADD_MANY = """
redis.replicate_commands()
local n = 0
for event in string.gmatch(ARGV[2], '[^\\n]+') do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', event)
  n = n + 1
end
return n
"""
"""Each line of ARGV[2] (an event's compact JSON, which has no raw newline) its own stream
entry, in order, capped at about ARGV[1] entries: what a pipeline of XADDs does, in one
command and one argument (redis-py spends ~30 us per pipelined command, several per
argument)."""


class RedisHistory:
    """The cluster's history: one Redis stream, capped, shared by every process.

    A process that records gives it its clock, which stamps each event as it is recorded
    (unless the event came with its time); one that only reads needs none.
    """

    def __init__(self, client: aioredis.Redis, prefix: str = "dnsrace", source: str = "",
                 maxlen: int = 200_000, clock: Clock | None = None) -> None:
        self.client = client
        self.key = f"{prefix}:history"
        self.source = source
        self.maxlen = maxlen
        self.clock = clock
        self._xadd_many = client.register_script(_XADD_MANY)

    def _stamped(self, event: Event) -> Event:
        """The event with its time and this history's source (one copy of it, at most)."""
        changes: dict[str, object] = {}
        if event.at_ms == UNSTAMPED:
            if self.clock is None:
                raise TypeError(f"a {event.kind} event has no time and this history no clock "
                                "to stamp it with (it was opened to read)")
            changes["at_ms"] = self.clock.now_ms()
        if not event.source and self.source:
            changes["source"] = self.source
        return dataclasses.replace(event, **changes) if changes else event  # type: ignore[arg-type]

    async def record(self, event: Event) -> None:
        event = self._stamped(event)
        try:
            await self.client.xadd(self.key, {"e": event.to_json()}, maxlen=self.maxlen,
                                   approximate=True)
        except RedisError as e:
            HISTORY_ERRORS.inc()
            log.warning("history event %s not recorded: %s", event.kind, e)

    async def record_many(self, events: Sequence[Event]) -> None:
        """Every event its own stream entry, in order, in one round-trip."""
        if not events:
            return
        try:
            await self._xadd_many(keys=[self.key], args=[
                self.maxlen, "\n".join(self._stamped(event).to_json() for event in events)])
        except RedisError as e:
            HISTORY_ERRORS.inc(len(events))
            log.warning("%d history events not recorded: %s", len(events), e)

    async def read(self, since_id: str = "-") -> list[tuple[str, Event]]:
        rows = await self.client.xrange(self.key, min=since_id)
        return [(entry_id, decode(fields["e"])) for entry_id, fields in rows]

    async def last_id(self) -> str:
        rows = await self.client.xrevrange(self.key, count=1)
        return rows[0][0] if rows else "0-0"

    async def follow(self, since_id: str = "$", block_ms: int = 1000,
                     stop: asyncio.Event | None = None) -> AsyncIterator[tuple[str, Event]]:
        """Events as they are recorded after ``since_id``, until ``stop`` is set.

        Stop it with the event rather than by cancelling: cancelling redis-py in the middle of
        a blocking XREAD can leave the call waiting for good (redis/redis-py#2663, #2028).
        """
        last = since_id
        while stop is None or not stop.is_set():
            reply = await self.client.xread({self.key: last}, block=block_ms, count=500)
            for _, rows in reply or []:
                for entry_id, fields in rows:
                    last = entry_id
                    yield entry_id, decode(fields["e"])
