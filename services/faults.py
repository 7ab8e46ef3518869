"""Faults: the model, where active faults live, and the gate an enactor passes at each point.

A fault is timed and self-expiring: it carries its expiry, and every reader treats a fault past
its expiry as over even if nobody removed it (so a fault ends even if the control service dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services import history

log = logging.getLogger(__name__)

PIDS_KEY = "dnsrace:enactor:pids"
"""Redis hash AZ -> enactor process id, for ``enactor_pause`` (SIGSTOP/SIGCONT)."""


class FaultType(StrEnum):
    ENACTOR_STALL = "enactor_stall"
    LOCK_DELAY = "lock_delay"
    ENACTOR_PAUSE = "enactor_pause"
    LB_HEALTH = "lb_health"
    AZ_PARTITION = "az_partition"


class StallPoint(StrEnum):
    AFTER_CHECK = "after_check"
    BEFORE_FLIP = "before_flip"
    DURING_CLEANUP = "during_cleanup"


@dataclass(frozen=True)
class Fault:
    id: str
    type: FaultType
    target: str
    started_ms: int
    expires_ms: int
    params: dict[str, Any] = field(default_factory=dict)

    def active(self, now_ms: int) -> bool:
        return now_ms < self.expires_ms

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Fault:
        data = json.loads(raw)
        data["type"] = FaultType(data["type"])
        return cls(**data)

    @classmethod
    def new(cls, type: FaultType, target: str, duration_s: float,
            params: dict[str, Any] | None = None, now_ms: int | None = None) -> Fault:
        start = int(time.time() * 1000) if now_ms is None else now_ms
        return cls(uuid.uuid4().hex[:12], type, target, start, start + int(duration_s * 1000),
                   dict(params or {}))


class FaultBook:
    """Active faults in one Redis hash (id -> JSON) with a change notification."""

    def __init__(self, client: aioredis.Redis, prefix: str = "dnsrace") -> None:
        self.client = client
        self.key = f"{prefix}:faults"
        self.channel = f"{prefix}:faults:changed"

    async def add(self, fault: Fault) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, fault.id, fault.to_json())
            pipe.publish(self.channel, fault.id)
            await pipe.execute()

    async def remove(self, fault_id: str) -> Fault | None:
        raw = await self.client.hget(self.key, fault_id)
        if raw is None:
            return None
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.key, fault_id)
            pipe.publish(self.channel, fault_id)
            await pipe.execute()
        return Fault.from_json(raw)

    async def all(self) -> list[Fault]:
        faults = [Fault.from_json(v) for v in (await self.client.hgetall(self.key)).values()]
        return sorted(faults, key=lambda f: (f.started_ms, f.id))


def matches(fault: Fault, az: str, point: StallPoint | None = None,
            endpoint: str | None = None, generation: int = 0) -> bool:
    """Does this fault apply to this enactor (and, for stalls, this point, endpoint and plan)?"""
    if fault.target not in (az, "all"):
        return False
    if point is None:
        return True
    if fault.params.get("point") != point:
        return False
    if generation < int(fault.params.get("min_generation", 0)):
        return False
    wanted = fault.params.get("endpoint")
    return wanted in (None, "", endpoint)


class FaultGate:
    """An enactor's view of the faults aimed at it: kept current by notification, not polling."""

    def __init__(self, book: FaultBook | None, az: str, sink: history.HistorySink,
                 clock: Callable[[], float] = time.time) -> None:
        self.book = book
        self.az = az
        self.sink = sink
        self.clock = clock
        self.faults: list[Fault] = []
        self.changed = asyncio.Event()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def refresh(self) -> None:
        if self.book is None:
            return
        try:
            self.faults = [f for f in await self.book.all() if matches(f, self.az)]
        except RedisError as e:
            log.warning("could not read faults: %s", e)
        self.changed.set()

    async def follow(self) -> None:
        """Keep the view current until cancelled (re-subscribes after a Redis restart)."""
        if self.book is None:
            return
        while True:
            pubsub = self.book.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.book.channel)
                await self.refresh()
                async for _ in pubsub.listen():
                    await self.refresh()
            except RedisError as e:
                log.warning("fault notifications lost (%s); re-subscribing", e)
                await asyncio.sleep(0.2)
            finally:
                await pubsub.aclose()

    def _active(self, kind: FaultType, point: StallPoint | None = None,
                endpoint: str | None = None, generation: int = 0) -> Fault | None:
        now = self._now_ms()
        for fault in self.faults:
            if fault.type is kind and fault.active(now) and matches(
                    fault, self.az, point, endpoint, generation):
                return fault
        return None

    def lock_delayed(self) -> bool:
        return self._active(FaultType.LOCK_DELAY) is not None

    def stall_pending(self, point: StallPoint, generation: int, endpoint: str = "") -> bool:
        """Would :meth:`checkpoint` stall here now? (A windowed walk cuts its window there.)"""
        return self._active(FaultType.ENACTOR_STALL, point, endpoint, generation) is not None

    async def checkpoint(self, point: StallPoint, generation: int, endpoint: str = "") -> None:
        """Stall here while a matching ``enactor_stall`` fault is active."""
        fault = self._active(FaultType.ENACTOR_STALL, point, endpoint, generation)
        if fault is None:
            return
        stall_id = fault.id
        log.warning("stalled at %s (fault %s) with plan %d", point, stall_id, generation)
        await self.sink.record(history.Stalled(point=point, endpoint=endpoint,
                                               generation=generation, fault_id=fault.id))
        while fault is not None:
            self.changed.clear()
            remaining = max(0.0, (fault.expires_ms - self._now_ms()) / 1000)
            # Woken by a change, or by the fault's own expiry: either way, look again.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
            fault = self._active(FaultType.ENACTOR_STALL, point, endpoint, generation)
        log.warning("resumed at %s with plan %d", point, generation)
        await self.sink.record(history.Resumed(point=point, endpoint=endpoint,
                                               generation=generation,
                                               fault_id=stall_id))
