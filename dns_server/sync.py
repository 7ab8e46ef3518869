"""Keep the in-memory zone equal to the zone in Redis, from notifications, never by polling.

One session: subscribe to the change channel and wait for Redis to confirm it, take a full
snapshot, then follow the notifications whose serial is above the snapshot's.  Each
notification carries the new values of the keys its batch changed (``change_batch.lua``
publishes them in the same atomic script), so following needs no read at all: applied in
serial order, without a gap, they make the copy exactly the zone at the last serial.  The
notifications waiting when the event loop comes back are applied together, and queries are
answered between groups only, so no query ever sees a mix of two batches (a flip without its
tree would be an empty answer we made up).

The subscription is :func:`services.store.follow.follow`'s (through ``ZoneStore.changes``):
a lost subscription or a restarted Redis is counted there, and once Redis confirms the new
subscription a full snapshot is taken again, in the same session.  A gap in the serials, a
serial going backwards or a malformed notification ends the session: the error is counted,
and after a back-off (:data:`SYNC_RETRY`) a new session starts from a full snapshot.  While
Redis is away the server keeps answering from the zone it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from dns_server import metrics
from dns_server.errors import ResyncReason, ZoneSyncError
from dns_server.zone import Zone
from services.core.backoff import RetryBackoff
from services.core.clock import Clock
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import supervised
from services.store.zone import ZoneChange, ZoneKeys, ZoneStore

log = logging.getLogger(__name__)

GROUP_MAX = 16
"""Notifications applied together at most; queries are answered between two groups. A batch
costs the server ~37 us to follow (parsing its notification, applying it), so a group holds
queries up for ~0.6 ms at most; 64 (~2.4 ms) gave a p99 about 20 % higher at 25,000 q/s under
the bench's churn (10.1 against 12.8 ms, 4 of 5 interleaved pairs, a probe by hand)."""


SYNC_RETRY = RetryBackoff(base_s=0.05, cap_s=1.0)
"""Between two sessions, and between two subscription attempts: 0.05 s doubling to 1 s."""
SUBSCRIBED = None
"""The queue's marker that Redis confirmed a (new) subscription: take a snapshot now."""


def _client(url: str, **kwargs: Any) -> aioredis.Redis:
    """A client that never reconnects silently: every failure reaches the loop that counts it
    and backs off (the subscription's loop, or the session's)."""
    return aioredis.Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0),
                                   socket_connect_timeout=2.0, **kwargs)


ZoneListener = Callable[[Zone, frozenset[str] | None], None]
"""Called after the zone changed: the names touched in the same zone object, or None for a
whole new zone (a snapshot)."""


class ZoneSync:
    """Follows the zone under ``keys`` in the Redis at ``redis_url``; ``zone`` is its copy.

    ``clock`` tells when a change went live, for the propagation metric (from the commit's
    Redis ``TIME``: the same host clock as the wall clock).
    """

    def __init__(self, redis_url: str, keys: ZoneKeys | None = None,
                 listener: ZoneListener | None = None, backoff: RetryBackoff = SYNC_RETRY,
                 subscribe_timeout_s: float = 5.0, clock: Clock = WALL_CLOCK) -> None:
        self.redis_url = redis_url
        self.keys = keys or ZoneKeys()
        self.clock = clock
        self.listener = listener
        self.backoff = backoff
        self.subscribe_timeout_s = subscribe_timeout_s
        self.zone: Zone | None = None
        self.loaded = asyncio.Event()
        self._advanced = asyncio.Event()
        self._run_id: str | None = None
        self._pending_reason: ResyncReason | None = None
        self._failures = 0
        """Sessions failed since the last snapshot installed."""
        self._last_notified = 0
        """Serial of the last notification of this subscription (applied or older than the
        zone)."""

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
            self._failures += 1
            await asyncio.sleep(self.backoff.delay(self._failures))

    async def _session(self) -> None:
        """Subscribe, snapshot, follow; a task group holds the pump, so a failure of either
        side ends the session with its error."""
        subscriber = _client(self.redis_url)
        reads = _client(self.redis_url, socket_timeout=5.0)
        queue: asyncio.Queue[ZoneChange | None] = asyncio.Queue()
        try:
            async with supervised() as tasks:
                changes = ZoneStore(subscriber, self.keys, clock=self.clock)
                tasks.create_task(self._pump(changes, queue), name="zone-changes")
                await self._follow(queue, ZoneStore(reads, self.keys, clock=self.clock))
        finally:
            await subscriber.aclose()
            await reads.aclose()

    async def _pump(self, store: ZoneStore, queue: asyncio.Queue[ZoneChange | None]) -> None:
        async def subscribed() -> None:
            queue.put_nowait(SUBSCRIBED)

        read = 0
        try:
            async for change in store.changes(resync=subscribed, backoff=self.backoff):
                queue.put_nowait(change)
                read += 1
                if read % GROUP_MAX == 0:
                    # Notifications already buffered are parsed without the event loop
                    # running: give it a turn, so a storm of changes does not hold up queries.
                    await asyncio.sleep(0)
        except (ValueError, KeyError, TypeError) as e:
            raise ZoneSyncError(ResyncReason.BAD_NOTIFICATION, f"{e!r}") from e

    async def _follow(self, queue: asyncio.Queue[ZoneChange | None], reads: ZoneStore) -> None:
        try:
            async with asyncio.timeout(self.subscribe_timeout_s):
                item = await queue.get()
        except TimeoutError:
            raise ZoneSyncError(ResyncReason.DISCONNECT, "Redis did not confirm the "
                                f"subscription within {self.subscribe_timeout_s:g} s") from None
        first = True
        while True:
            if item is SUBSCRIBED:
                if not first:  # the subscription was lost and taken again
                    self._pending_reason = self._pending_reason or ResyncReason.DISCONNECT
                first = False
                await self._snapshot(reads)
                item = await queue.get()
                continue
            changes = [item]
            item = None
            while not queue.empty() and len(changes) < GROUP_MAX:
                following = queue.get_nowait()
                if following is SUBSCRIBED:
                    item = SUBSCRIBED  # after this group
                    break
                changes.append(following)
            self._apply(self._contiguous(changes))
            if item is None:
                if not queue.empty():
                    await asyncio.sleep(0)  # let queries in between groups
                item = await queue.get()

    async def _snapshot(self, reads: ZoneStore) -> None:
        info = await reads.client.info("server")
        snapshot = await reads.snapshot()
        self._install(Zone.from_snapshot(snapshot), str(info.get("run_id", "")))
        self._last_notified = 0

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
        self._failures = 0
        if self.listener is not None:
            self.listener(zone, None)
        metrics.observe_zone(zone)
        self.loaded.set()
        self._advance()

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

