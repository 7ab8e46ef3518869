"""``follow``: a channel's messages through a real Redis restart, re-subscribed and re-read."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from services.config import Settings
from services.core.backoff import RetryBackoff
from services.runtime.redis_server import EmbeddedRedis
from services.runtime.service import redis_client
from services.store.follow import close_within, follow
from tests.conftest import wait_until

CHANNEL = "test:follow"
FAST = RetryBackoff(base_s=0.01, cap_s=0.2, rng=random.Random(1))


def lost(feed: str) -> float:
    return REGISTRY.get_sample_value("dnsrace_subscriptions_lost_total", {"feed": feed}) or 0.0


def failures(feed: str) -> float:
    return REGISTRY.get_sample_value("dnsrace_subscribe_failures_total", {"feed": feed}) or 0.0


class Reader:
    """Consumes ``follow`` in a task: what it received, how often it re-read."""

    def __init__(self, client: aioredis.Redis, feed: str,
                 on_resync: Callable[[int], object] | None = None) -> None:
        self.client = client
        self.feed = feed
        self.received: list[str] = []
        self.resyncs = 0
        self.on_resync = on_resync
        self.task = asyncio.create_task(self._run())

    async def _resync(self) -> None:
        self.resyncs += 1
        if self.on_resync is not None:
            result = self.on_resync(self.resyncs)
            if asyncio.iscoroutine(result):
                await result

    async def _run(self) -> None:
        async for data in follow(self.client, CHANNEL, feed=self.feed, resync=self._resync,
                                 backoff=FAST):
            self.received.append(data)

    async def until(self, check: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
        async def holds() -> bool:
            if self.task.done():
                self.task.result()  # a reader that died says why
            return check()

        await wait_until(holds, timeout_s, what)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test's own: restarting it disturbs no other test."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


async def publish(url: str, data: str) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await client.publish(CHANNEL, data)
    finally:
        await client.aclose()


@pytest.mark.parametrize("retrying", [False, True], ids=["plain_client", "service_client"])
async def test_a_redis_restart_is_counted_resubscribed_and_resynced(
        own_redis: EmbeddedRedis, retrying: bool) -> None:
    """A client without retries sees the loss as an error; the services' client reconnects
    by itself: either way the loss is counted, the channel followed again, the state re-read."""
    feed = f"restart_{retrying}"
    client = (redis_client(Settings(redis_url=own_redis.url)) if retrying
              else aioredis.Redis.from_url(own_redis.url, decode_responses=True))
    reader = Reader(client, feed)
    try:
        await reader.until(lambda: reader.resyncs == 1, "the first subscription")
        await publish(own_redis.url, "before")
        await reader.until(lambda: reader.received == ["before"], "the first message")
        before = lost(feed)

        await asyncio.to_thread(own_redis.stop)
        if not retrying:  # the plain client fails at once: attempts fail until Redis is back
            await reader.until(lambda: failures(feed) >= 2, "failed attempts to be counted")
        await asyncio.to_thread(own_redis.start)
        await reader.until(lambda: reader.resyncs == 2, "a re-read after the restart")
        assert lost(feed) == before + 1  # one restart, one loss, however many attempts
        await publish(own_redis.url, "after")
        await reader.until(lambda: reader.received[-1:] == ["after"], "a message after it")
        assert reader.received == ["before", "after"]
    finally:
        await reader.stop()
        await client.aclose()


async def test_a_change_published_while_resyncing_is_not_lost(
        redis_client: aioredis.Redis, redis_server: EmbeddedRedis) -> None:
    """The re-read happens once Redis confirmed the subscription: a change that lands during
    it arrives as a message right after."""

    async def publish_during_resync(n: int) -> None:
        await publish(redis_server.url, f"during-{n}")

    reader = Reader(redis_client, "during", on_resync=publish_during_resync)
    try:
        await reader.until(lambda: reader.received == ["during-1"], "the change made mid-resync")
    finally:
        await reader.stop()


async def test_a_failed_resync_is_a_lost_subscription_retried_with_backoff(
        redis_client: aioredis.Redis) -> None:
    before = lost("failing_resync")

    def fail_twice(n: int) -> None:
        if n <= 2:
            raise RedisConnectionError(f"read {n} failed")

    reader = Reader(redis_client, "failing_resync", on_resync=fail_twice)
    try:
        await reader.until(lambda: reader.resyncs == 3, "a third, successful re-read")
        assert lost("failing_resync") == before + 2
        subscribers = await redis_client.pubsub_numsub(CHANNEL)
        assert subscribers[0][1] >= 1  # subscribed again, not given up
    finally:
        await reader.stop()


async def test_an_error_that_is_not_redis_ends_the_iteration_with_it(
        redis_client: aioredis.Redis) -> None:
    def broken(_: int) -> None:
        raise TypeError("a bug in the re-read")

    reader = Reader(redis_client, "bug", on_resync=broken)
    with pytest.raises(TypeError, match="a bug in the re-read"):
        await asyncio.wait_for(reader.task, 5)

    async def unsubscribed() -> bool:
        return (await redis_client.pubsub_numsub(CHANNEL))[0][1] == 0

    await wait_until(unsubscribed, what="the subscription to be closed on the way out")


async def test_a_close_that_stalls_is_left_running_and_the_follower_goes_on() -> None:
    """redis-py's PubSub.aclose can stall and cannot be cancelled (redis/redis-py#3941): the
    follower waits for it a bounded time, and the close, left running, still ends later."""
    release, started = asyncio.Event(), asyncio.Event()
    ended: list[str] = []

    async def stalled_close() -> None:
        started.set()
        await release.wait()
        ended.append("closed")

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert not await close_within(stalled_close(), 0.1)
    assert 0.1 <= loop.time() - t0 < 1.0

    def closes(n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return ended == ["closed"] * n
        return check

    release.set()
    await wait_until(closes(1), 2, "the stalled close to end once released")

    release.clear()
    started.clear()
    waiter = asyncio.create_task(close_within(stalled_close(), 30))  # a follower being stopped
    await asyncio.wait_for(started.wait(), 2)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert ended == ["closed"]  # not ended by the cancel either: still waiting for release
    release.set()
    await wait_until(closes(2), 2, "the close to go on when the follower is cancelled")


async def test_a_close_that_fails_ends_the_wait_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    async def failing_close() -> None:
        raise ConnectionResetError("peer gone")

    async def logged() -> bool:  # by the close's done callback, on a later turn of the loop
        return "closing a subscription failed" in caplog.text and "peer gone" in caplog.text

    assert await close_within(failing_close(), 5)
    await wait_until(logged, 2, "the close's error to be logged")
