"""Keep the in-memory zone equal to the zone in Redis, from notifications, never by polling.

One session: subscribe to the change channel and wait for Redis to confirm it, take a full
snapshot, then follow the notifications whose serial is above the snapshot's.  Each
notification carries the new values of the keys its batch changed (``change_batch.lua``
publishes them in the same atomic script), so following needs no read at all: applied in
serial order, without a gap, they make the copy exactly the zone at the last serial.  The
notifications waiting when the event loop comes back are applied together, and queries are
answered between groups only, so no query ever sees a mix of two batches (a flip without its
tree would be an empty answer we made up).

A gap in the serials, a serial going backwards, a malformed notification, a lost
subscription or a restarted Redis ends the session: the error is counted, and after a short
back-off a new session starts from a full snapshot.  While Redis is away the server keeps
answering from the zone it has.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from dns_server import metrics
from dns_server.errors import ResyncReason, ZoneSyncError
from dns_server.zone import Zone
from services.core.clock import Clock
from services.runtime.clock import WALL_CLOCK
from services.store.zone import ZoneChange, ZoneKeys, ZoneStore

log = logging.getLogger(__name__)
T = TypeVar("T")

GROUP_MAX = 64
"""Notifications applied together at most; queries are answered between two groups."""


@dataclass
class Backoff:
    """Capped exponential back-off with jitter; ``reset`` after a success."""

    base_s: float = 0.05
    cap_s: float = 1.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        delay = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        return delay * self.rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class _ConfirmingPubSub(PubSub):
    """A PubSub that tells us when Redis has confirmed the subscription."""

    def __init__(self, *args: Any, confirmed: asyncio.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._confirmed = confirmed

    async def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        if response and isinstance(response, list | tuple) and response[0] in ("subscribe",
                                                                                 b"subscribe"):
            self._confirmed.set()
        return await super().handle_message(response, ignore_subscribe_messages)


class _SubscriberClient(aioredis.Redis):
    """The subscription's own client: confirms SUBSCRIBE, and never reconnects silently."""

    def __init__(self, url: str, confirmed: asyncio.Event) -> None:
        pool = aioredis.ConnectionPool.from_url(url, decode_responses=True,
                                                retry=Retry(NoBackoff(), 0),
                                                socket_connect_timeout=2.0)
        super().__init__(connection_pool=pool)
        self.auto_close_connection_pool = True
        self._confirmed = confirmed

    def pubsub(self, **kwargs: Any) -> PubSub:
        return _ConfirmingPubSub(self.connection_pool, confirmed=self._confirmed, **kwargs)


def _reads_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0),
                                   socket_connect_timeout=2.0, socket_timeout=5.0)


ZoneListener = Callable[[Zone, frozenset[str] | None], None]
"""Called after the zone changed: the names touched in the same zone object, or None for a
whole new zone (a snapshot)."""


class ZoneSync:
    """Follows the zone under ``keys`` in the Redis at ``redis_url``; ``zone`` is its copy.

    ``clock`` tells when a change went live, for the propagation metric (from the commit's
    Redis ``TIME``: the same host clock as the wall clock).
    """

    def __init__(self, redis_url: str, keys: ZoneKeys | None = None,
                 listener: ZoneListener | None = None, backoff: Backoff | None = None,
                 subscribe_timeout_s: float = 5.0, clock: Clock = WALL_CLOCK) -> None:
        self.redis_url = redis_url
        self.keys = keys or ZoneKeys()
        self.clock = clock
        self.listener = listener
        self.backoff = backoff or Backoff()
        self.subscribe_timeout_s = subscribe_timeout_s
        self.zone: Zone | None = None
        self.loaded = asyncio.Event()
        self._advanced = asyncio.Event()
        self._run_id: str | None = None
        self._pending_reason: ResyncReason | None = None
        self._last_notified = 0
        """Serial of the last notification of this session (applied or older than the zone)."""

    @property
    def serial(self) -> int | None:
        return None if self.zone is None else self.zone.serial

    async def wait_for_serial(self, serial: int, timeout_s: float | None = None) -> None:
        """Return once the zone in memory is at ``serial`` or later (what tests wait on)."""
        async with asyncio.timeout(timeout_s):
            while self.zone is None or self.zone.serial < serial:
                await self._advanced.wait()

    def _advance(self) -> None:
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def run(self) -> None:
        """Follow the zone until cancelled; every failure is counted and retried."""
        while True:
            try:
                await self._session()
            except ZoneSyncError as e:
                self._pending_reason = e.reason
                log.warning("zone sync lost track (%s); resyncing", e)
            except (RedisError, OSError) as e:
                self._pending_reason = self._pending_reason or ResyncReason.DISCONNECT
                metrics.SYNC_ERRORS.labels("connection").inc()
                log.warning("zone sync cannot reach Redis: %s", e)
            except Exception:
                self._pending_reason = self._pending_reason or ResyncReason.BAD_NOTIFICATION
                metrics.SYNC_ERRORS.labels("internal").inc()
                log.exception("zone sync failed; resyncing")
            await asyncio.sleep(self.backoff.next_delay())

    async def _session(self) -> None:
        confirmed = asyncio.Event()
        subscriber = _SubscriberClient(self.redis_url, confirmed)
        reads = _reads_client(self.redis_url)
        queue: asyncio.Queue[ZoneChange] = asyncio.Queue()
        pump = asyncio.create_task(
            self._pump(ZoneStore(subscriber, self.keys, clock=self.clock), queue),
            name="zone-changes")
        try:
            async with asyncio.timeout(self.subscribe_timeout_s):
                await self._race(confirmed.wait(), pump)
            store = ZoneStore(reads, self.keys, clock=self.clock)
            info = await reads.info("server")
            snapshot = await store.snapshot()
            self._install(Zone.from_snapshot(snapshot), str(info.get("run_id", "")))
            self._last_notified = 0
            await self._follow(queue, pump)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await subscriber.aclose()
            await reads.aclose()

    async def _pump(self, store: ZoneStore, queue: asyncio.Queue[ZoneChange]) -> None:
        read = 0
        async for change in store.changes():
            queue.put_nowait(change)
            read += 1
            if read % GROUP_MAX == 0:
                # Notifications already buffered are parsed without the event loop running:
                # give it a turn, so a storm of changes does not hold up queries.
                await asyncio.sleep(0)
        raise ZoneSyncError(ResyncReason.DISCONNECT, "the change stream ended")

    async def _race(self, awaitable: Awaitable[T], pump: asyncio.Task[None]) -> T:
        """Await ``awaitable`` unless the subscription fails first (then raise why)."""
        task = asyncio.ensure_future(awaitable)
        try:
            await asyncio.wait({task, pump}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        error = pump.exception() if pump.done() and not pump.cancelled() else None
        if isinstance(error, ZoneSyncError):
            raise error
        reason = (ResyncReason.BAD_NOTIFICATION if isinstance(error, ValueError | KeyError |
                                                               TypeError)
                  else ResyncReason.DISCONNECT)
        raise ZoneSyncError(reason, f"subscription failed: {error!r}") from error

    def _install(self, zone: Zone, run_id: str) -> None:
        if zone.rejected:
            metrics.BAD_RECORDS.inc(zone.rejected)
            log.warning("%d record sets do not decode; served as absent", zone.rejected)
        reason = self._pending_reason
        if reason is ResyncReason.DISCONNECT and self._run_id and run_id != self._run_id:
            reason = ResyncReason.REDIS_RESTART
        if self.zone is not None and reason is not None:
            metrics.RESYNCS.labels(reason).inc()
            log.info("zone resynced from a snapshot at serial %d (%s)", zone.serial, reason)
        else:
            log.info("zone loaded: %d record sets at serial %d", len(zone), zone.serial)
        self._pending_reason = None
        self._run_id = run_id
        self.zone = zone
        self.backoff.reset()
        if self.listener is not None:
            self.listener(zone, None)
        metrics.observe_zone(zone)
        self.loaded.set()
        self._advance()

    async def _follow(self, queue: asyncio.Queue[ZoneChange], pump: asyncio.Task[None]) -> None:
        while True:
            changes = [await self._race(queue.get(), pump)]
            while not queue.empty() and len(changes) < GROUP_MAX:
                changes.append(queue.get_nowait())
            self._apply(self._contiguous(changes))
            if not queue.empty():
                await asyncio.sleep(0)  # let queries in between groups

    def _contiguous(self, changes: list[ZoneChange]) -> list[ZoneChange]:
        """The changes above the zone's serial, checked to follow it without a gap."""
        assert self.zone is not None
        fresh: list[ZoneChange] = []
        for change in changes:
            if change.serial <= self._last_notified:
                raise ZoneSyncError(ResyncReason.SERIAL_REGRESSED,
                                    f"serial {change.serial} notified after "
                                    f"{self._last_notified}")
            self._last_notified = change.serial
            last = fresh[-1].serial if fresh else self.zone.serial
            if change.serial <= last:
                continue  # committed before the snapshot was taken: already in it
            if change.serial != last + 1:
                raise ZoneSyncError(ResyncReason.GAP,
                                    f"expected serial {last + 1}, got {change.serial}")
            fresh.append(change)
        return fresh

    def _apply(self, changes: list[ZoneChange]) -> None:
        """Apply a group of consecutive batches at once; queries see all of them or none."""
        zone = self.zone
        assert zone is not None
        if not changes:
            return
        touched = set()
        for change in changes:
            for key, value in zip(change.keys, change.values, strict=True):
                update = zone.set(key, value)
                touched.add(update.name)
                if not update.valid:
                    metrics.BAD_RECORDS.inc()
                    log.warning("record set %s does not decode; served as absent", key)
        zone.serial = changes[-1].serial
        if self.listener is not None:
            self.listener(zone, frozenset(touched))
        self._live(changes)

    def _live(self, changes: list[ZoneChange]) -> None:
        """These changes now answer queries: propagation times, gauges, serial waiters.

        Both times are whole milliseconds, so each figure is within 1 ms either way.
        """
        now_ms = self.clock.now_ms()
        for change in changes:
            metrics.PROPAGATION.observe(max(0, now_ms - change.at_ms) / 1000.0)
        assert self.zone is not None
        metrics.observe_zone(self.zone)
        self._advance()

