"""Follow a Redis pub/sub channel through lost connections and Redis restarts.

Every reader that learns of changes by notification (the enactor's plans and faults, the
fleet's health, the DNS server's zone) needs the same loop: subscribe; once Redis has
confirmed the subscription, re-read the state the messages describe (whatever was published
while nobody listened is in it); then take the messages. When the subscription is lost, a
notification may have been missed: subscribe again after a back-off, and re-read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from services.core.backoff import RetryBackoff
from services.errors import DnsraceError

log = logging.getLogger(__name__)

SUBSCRIPTIONS_LOST = Counter(
    "dnsrace_subscriptions_lost",
    "Subscriptions to a Redis change channel lost (connection dropped, Redis restarted, or "
    "the re-read after subscribing failed); each is followed by a new one and a re-read",
    ["feed"],
)
SUBSCRIBE_FAILURES = Counter(
    "dnsrace_subscribe_failures",
    "Attempts to subscribe to a Redis change channel that failed before Redis confirmed "
    "them (Redis away); each is retried after a back-off",
    ["feed"],
)
SUBSCRIPTION_CLOSE_STALLS = Counter(
    "dnsrace_subscription_close_stalls",
    "Subscriptions whose connection did not close within SUBSCRIPTION_CLOSE_TIMEOUT_S (a "
    "known redis-py stall, redis/redis-py#3941); the close goes on in the background",
    ["feed"],
)
FOLLOW_BACKOFF = RetryBackoff(base_s=0.05, cap_s=1.0)
"""Between a lost subscription and the next attempt: 0.05 s doubling to 1 s, full jitter."""
SUBSCRIPTION_CLOSE_TIMEOUT_S = 2.0
"""How long a follower waits for its subscription's connection to close before going on."""
_CLOSING: set[asyncio.Task[None]] = set()
"""Closes still running after their wait: kept referenced until they end."""

Resync = Callable[[], Awaitable[None]]


class SubscriptionEnded(DnsraceError, RedisError):
    """The server ended a subscription we did not end (every channel unsubscribed): lost, as
    if by a Redis error."""


async def follow(client: aioredis.Redis, channel: str, *, feed: str, resync: Resync,
                 backoff: RetryBackoff = FOLLOW_BACKOFF) -> AsyncIterator[str]:
    """The data of every message published on ``channel``, until the consumer stops.

    ``resync`` runs after Redis confirms each subscription, before the messages that follow
    it are taken (they wait in the socket, and may repeat what the re-read saw). A lost
    subscription (a Redis or socket error once Redis had confirmed it: while re-reading or
    listening) is counted in ``dnsrace_subscriptions_lost_total{feed}``; after
    ``backoff.delay(attempt)`` the loop subscribes and re-reads again, as it does after an
    attempt that failed before any confirmation (Redis still away: counted in
    ``dnsrace_subscribe_failures_total{feed}``, not as a further loss). A client that
    reconnects by itself (redis-py with retries) re-subscribes without an error: its new
    confirmation counts as a loss too. Errors of any other kind are not ours to survive and
    end the iteration.
    """
    lost = SUBSCRIPTIONS_LOST.labels(feed)
    failed = SUBSCRIBE_FAILURES.labels(feed)
    stalled = SUBSCRIPTION_CLOSE_STALLS.labels(feed)
    attempt = 0
    while True:
        pubsub = client.pubsub()
        confirmed = False
        try:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                if message["type"] == "message":
                    yield message["data"]
                elif message["type"] == "subscribe":
                    if confirmed:
                        lost.inc()
                        log.warning("%s: the client re-subscribed to %s after a reconnect; "
                                    "re-reading", feed, channel)
                    confirmed = True
                    await resync()
                    attempt = 0
            raise SubscriptionEnded(f"the subscription to {channel} ended")
        except (RedisError, OSError) as e:
            if confirmed:
                lost.inc()
            else:  # Redis still away: a failed attempt, not a further loss
                failed.inc()
            attempt += 1
            delay = backoff.delay(attempt)
            log.warning("%s: %s %s (%s); subscribing again in %.2f s", feed,
                        "lost the subscription to" if confirmed else "could not subscribe to",
                        channel, e or type(e).__name__, delay)
        finally:
            if not await close_within(pubsub.aclose(), SUBSCRIPTION_CLOSE_TIMEOUT_S):
                stalled.inc()
                log.warning("%s: the subscription to %s did not close within %g s; going on "
                            "while it closes", feed, channel, SUBSCRIPTION_CLOSE_TIMEOUT_S)
        await asyncio.sleep(delay)


async def close_within(close: Coroutine[Any, Any, None], timeout_s: float) -> bool:
    """Run ``close`` for at most ``timeout_s``; True if it ended (well or with an error).

    redis-py's ``PubSub.aclose`` waits for the socket to close and cannot be cancelled, and
    that wait can stall (redis/redis-py#3941): a follower that is being stopped would then
    never stop. A close that takes longer goes on in the background (its error, if any, is
    logged) and the caller goes on. Cancelling the caller does not cancel the close.
    """
    closing = asyncio.ensure_future(close)
    _CLOSING.add(closing)
    closing.add_done_callback(_closed)
    done, _ = await asyncio.wait({closing}, timeout=timeout_s)
    return bool(done)


def _closed(closing: asyncio.Task[None]) -> None:
    _CLOSING.discard(closing)
    if not closing.cancelled() and closing.exception() is not None:
        log.warning("closing a subscription failed: %r", closing.exception())
