"""Domain events and the history they make.

Every process records what it did as frozen dataclasses; the history is a Redis stream that
``dnsrace check`` and the reports read. Events speak the incident's words, never wire formats.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
HISTORY_ERRORS = Counter("dnsrace_history_errors_total",
                         "History events that could not be recorded (Redis unreachable)")


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    at_ms: int = dataclasses.field(default_factory=now_ms)
    source: str = ""

    def to_json(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _COMPACT.encode({"kind": self.kind, **fields})


_KINDS: dict[str, type[Event]] = {}


def _event(cls: type[Event]) -> type[Event]:
    _KINDS[cls.kind] = cls
    return cls


@_event
@dataclass(frozen=True, kw_only=True)
class PlanPublished(Event):
    kind: ClassVar[str] = "plan_published"
    generation: int


@_event
@dataclass(frozen=True, kw_only=True)
class CheckPassed(Event):
    """The enactor's one-time staleness check: plan ``generation`` is newer than ``applied``."""

    kind: ClassVar[str] = "check_passed"
    generation: int
    applied: int


@_event
@dataclass(frozen=True, kw_only=True)
class LockLost(Event):
    kind: ClassVar[str] = "lock_lost"
    endpoint: str
    generation: int
    reason: str
    backoff_s: float


@_event
@dataclass(frozen=True, kw_only=True)
class BatchCommitted(Event):
    """An endpoint's alias now names the tree of ``generation`` (was ``previous``)."""

    kind: ClassVar[str] = "batch_committed"
    endpoint: str
    generation: int
    previous: int
    rollback: int
    serial: int
    repaired: bool = False


@_event
@dataclass(frozen=True, kw_only=True)
class BatchRejected(Event):
    kind: ClassVar[str] = "batch_rejected"
    endpoint: str
    generation: int
    reason: str
    detail: str


@_event
@dataclass(frozen=True, kw_only=True)
class RoundCompleted(Event):
    """An enactor finished a round (walk and clean-up) for the plan of ``generation``."""

    kind: ClassVar[str] = "round_completed"
    generation: int
    committed: int
    rejected: int
    deleted: int


@_event
@dataclass(frozen=True, kw_only=True)
class PlanRefused(Event):
    kind: ClassVar[str] = "plan_refused"
    endpoint: str
    generation: int
    reason: str


@_event
@dataclass(frozen=True, kw_only=True)
class TreeDeleted(Event):
    """Clean-up deleted a tree; ``live`` when an alias or rollback named it at that moment."""

    kind: ClassVar[str] = "tree_deleted"
    tree: str
    endpoint: str
    generation: int
    live: bool
    serial: int


@_event
@dataclass(frozen=True, kw_only=True)
class Stalled(Event):
    kind: ClassVar[str] = "stalled"
    point: str
    endpoint: str
    generation: int
    fault_id: str


@_event
@dataclass(frozen=True, kw_only=True)
class Resumed(Event):
    kind: ClassVar[str] = "resumed"
    point: str
    endpoint: str
    generation: int
    fault_id: str


@_event
@dataclass(frozen=True, kw_only=True)
class FaultStarted(Event):
    kind: ClassVar[str] = "fault_started"
    fault_id: str
    type: str
    target: str
    expires_ms: int
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@_event
@dataclass(frozen=True, kw_only=True)
class FaultEnded(Event):
    kind: ClassVar[str] = "fault_ended"
    fault_id: str
    type: str
    target: str
    why: str


@_event
@dataclass(frozen=True, kw_only=True)
class DnsAnswer(Event):
    """A sampled answer: which generation stood behind it and how many addresses it held."""

    kind: ClassVar[str] = "dns_answer"
    endpoint: str
    generation: int
    addresses: int


def decode(raw: str) -> Event:
    data = json.loads(raw)
    cls = _KINDS[data.pop("kind")]
    return cls(**data)


class HistorySink(Protocol):
    async def record(self, event: Event) -> None: ...
    async def record_many(self, events: Sequence[Event]) -> None:
        """Record ``events`` in their order (one round-trip where the sink has a network)."""
        ...


class MemoryHistory:
    """A history kept in a list, for the interleaving explorer and pure tests."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._recorded = asyncio.Event()

    async def record(self, event: Event) -> None:
        self.events.append(event)
        self._recorded.set()

    async def record_many(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        self._recorded.set()

    async def wait_for(self, seen: Callable[[Event], bool], timeout_s: float) -> Event:
        """The first recorded event ``seen`` accepts, waiting up to ``timeout_s`` for it."""
        async def first() -> Event:
            checked = 0
            while True:
                for event in self.events[checked:]:
                    if seen(event):
                        return event
                checked = len(self.events)
                self._recorded.clear()
                await self._recorded.wait()
        return await asyncio.wait_for(first(), timeout_s)


_XADD_MANY = """
redis.replicate_commands()
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
return #ARGV - 1
"""
"""Each of ARGV[2..] its own stream entry, in order, capped at about ARGV[1] entries: what a
pipeline of XADDs does, in one command (redis-py spends ~30 us per pipelined command)."""


class RedisHistory:
    """The cluster's history: one Redis stream, capped, shared by every process."""

    def __init__(self, client: aioredis.Redis, prefix: str = "dnsrace", source: str = "",
                 maxlen: int = 200_000) -> None:
        self.client = client
        self.key = f"{prefix}:history"
        self.source = source
        self.maxlen = maxlen
        self._xadd_many = client.register_script(_XADD_MANY)

    def _stamped(self, event: Event) -> Event:
        if not event.source and self.source:
            return dataclasses.replace(event, source=self.source)
        return event

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
                self.maxlen, *(self._stamped(event).to_json() for event in events)])
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
