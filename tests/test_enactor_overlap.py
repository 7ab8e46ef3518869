"""The enactor's overlap on the real Redis, seen with MONITOR: each window's batches reach
Redis right behind the next window's read, so Redis answers the read first and commits the
batches while the enactor decides the window it read; the history of the window before them
goes behind them, built while the read is answered and not waited for (the enactor waits for
one window's history only before it sends the next, and before a back-off, a stall or the
end)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from services.core import events
from services.store.history import RedisHistory
from tests.conftest import wait_until
from tests.test_enactor_window import CLOCK, ENDPOINTS, Cell

WINDOW = 3


async def test_each_windows_batches_reach_redis_right_behind_the_next_windows_read(
        redis_client: aioredis.Redis, prefix: str) -> None:
    cell = Cell(redis_client, prefix)
    history = RedisHistory(redis_client, prefix, source="enactor/a", clock=CLOCK)
    cell.sink = history  # type: ignore[assignment]
    enactor = cell.enactor(WINDOW)
    scripts = {cell.zone._read_endpoints.sha: "read", cell.zone._apply.sha: "batches",
               history._xadd_many.sha: "history"}
    seen: list[str] = []
    markers = {f"{prefix} start": "start", f"{prefix} end": "end"}

    async def watch() -> None:
        async with redis_client.monitor() as monitor:
            while True:
                command = (await monitor.next_command())["command"]
                kind = next((kind for key, kind in (*scripts.items(), *markers.items())
                             if key in command), "other")
                seen.append(kind)

    def saw(marker: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            await redis_client.echo(f"{prefix} {marker}")
            return marker in seen
        return check

    await cell.publish()
    await enactor.run_round()  # plan 1, unwatched: Redis learns the scripts (NOSCRIPT, load)
    watching = asyncio.create_task(watch())
    try:
        await cell.publish()
        await wait_until(saw("start"), 10, "MONITOR seeing commands")
        await enactor.run_round()
        await wait_until(saw("end"), 10, "MONITOR seeing the round's end")
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    calls = [kind for kind in seen if kind in ("read", "batches", "history")]
    windows = -(-len(ENDPOINTS) // WINDOW)
    # The one-time check reads the regional endpoint with the window's script; then window 0
    # is read; then each window's read with the batches of the one before right behind it;
    # the last window's batches go when the walk awaits them.
    assert [c for c in calls if c != "history"] == (
        ["read", "read"] + ["read", "batches"] * (windows - 1) + ["batches"]), calls
    reads = [i for i, c in enumerate(calls) if c == "read"]
    sent = [i for i, c in enumerate(calls) if c == "batches"]
    recorded = [i for i, c in enumerate(calls) if c == "history"]
    # The history goes behind the batches it records, built and sent while the next read is
    # answered, never awaited before it; the last windows' history goes before the round ends.
    assert 2 <= len(recorded) <= windows and recorded[0] > sent[0] and recorded[-1] > sent[-1]
    assert recorded[0] > reads[3], calls  # window 0's, behind window 2's read
    # Nothing of it between a read and the batches right behind it.
    assert all(calls[r + 1] == "batches" for r in reads[2:]), calls
    # All of it, in the plan's order, with the serials the batches committed at.
    committed = [e for _, e in await history.read() if isinstance(e, events.BatchCommitted)
                 and e.generation == 2]
    assert [e.endpoint for e in committed] == list(ENDPOINTS)
    assert [e.serial for e in committed] == sorted({e.serial for e in committed})
    assert set((await cell.aliases()).values()) == {2}  # and the plan was applied
