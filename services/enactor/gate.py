"""The gate an enactor passes at each point: its view of the faults aimed at it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from services.core import events
from services.core.faults import Fault, FaultType, StallPoint, matches
from services.runtime.swallowed import swallowed
from services.store.faults import FaultBook
from services.store.follow import follow as follow_channel

log = logging.getLogger(__name__)
READ_ERRORS = swallowed("fault_gate_read")


class FaultGate:
    """An enactor's view of the faults aimed at it: kept current by notification, not polling."""

    def __init__(self, book: FaultBook | None, az: str, sink: events.HistorySink,
                 clock: Callable[[], float] = time.time) -> None:
        self.book = book
        self.az = az
        self.sink = sink
        self.clock = clock
        self.faults: list[Fault] = []
        self.changed = asyncio.Event()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _read(self) -> None:
        assert self.book is not None
        self.faults = [f for f in await self.book.all() if matches(f, self.az)]
        self.changed.set()

    async def refresh(self) -> None:
        """Read the faults again; if Redis fails, the view stays as it was (counted, logged)
        until the next notice or re-subscription reads it."""
        if self.book is None:
            return
        try:
            await self._read()
        except RedisError as e:
            READ_ERRORS.inc()
            log.warning("could not read faults: %s", e)
            self.changed.set()

    async def follow(self) -> None:
        """Keep the view current until cancelled: re-read on every notice, and after every
        (re)subscription (:func:`services.store.follow.follow`)."""
        if self.book is None:
            return
        async for _ in follow_channel(self.book.client, self.book.channel, feed="faults",
                                      resync=self._read):
            await self.refresh()

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
        await self.sink.record(events.Stalled(point=point, endpoint=endpoint,
                                               generation=generation, fault_id=fault.id))
        while fault is not None:
            self.changed.clear()
            remaining = max(0.0, (fault.expires_ms - self._now_ms()) / 1000)
            # Woken by a change, or by the fault's own expiry: either way, look again.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
            fault = self._active(FaultType.ENACTOR_STALL, point, endpoint, generation)
        log.warning("resumed at %s with plan %d", point, generation)
        await self.sink.record(events.Resumed(point=point, endpoint=endpoint,
                                               generation=generation,
                                               fault_id=stall_id))
