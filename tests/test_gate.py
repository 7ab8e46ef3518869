"""An enactor's fault gate against a real Redis: notices, restarts, and a Redis that fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.config import Settings
from services.core import events
from services.core.faults import Fault, FaultType, StallParams, StallPoint
from services.enactor.gate import FaultGate
from services.runtime.clock import WALL_CLOCK
from services.runtime.redis_server import EmbeddedRedis
from services.runtime.service import redis_client
from services.store.faults import FaultBook
from tests.conftest import wait_until

AZ = "use1-az1"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def stall() -> Fault:
    return Fault.new(FaultType.ENACTOR_STALL, AZ, 60, StallParams(StallPoint.AFTER_CHECK))


async def test_the_gate_follows_faults_across_a_redis_restart(own_redis: EmbeddedRedis,
                                                              prefix: str) -> None:
    client = redis_client(Settings(redis_url=own_redis.url))
    book = FaultBook(client, prefix)
    gate = FaultGate(book, AZ, events.MemoryHistory(WALL_CLOCK))
    follower = asyncio.create_task(gate.follow())
    lost = sample("dnsrace_subscriptions_lost_total", feed="faults")
    try:
        first = stall()
        await book.add(first)

        async def sees(fault: Fault) -> bool:
            if follower.done():
                follower.result()
            return fault.id in {f.id for f in gate.faults}

        await wait_until(lambda: sees(first), 5, "the gate to see the first fault")
        assert gate.stall_pending(StallPoint.AFTER_CHECK, generation=1)

        await asyncio.to_thread(own_redis.restart)
        second = stall()
        await book.add(second)  # the client reconnects; the gate hears of it all the same
        await wait_until(lambda: sees(second), 15, "the gate to see a fault after the restart")
        assert sample("dnsrace_subscriptions_lost_total", feed="faults") == lost + 1
        await book.remove(first.id)
        await book.remove(second.id)

        async def clear() -> bool:
            return gate.faults == []

        await wait_until(clear, 5, "the gate to see the faults removed")
        assert not gate.stall_pending(StallPoint.AFTER_CHECK, generation=1)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await client.aclose()


async def test_a_fault_read_that_fails_is_counted_and_the_view_kept(
        own_redis: EmbeddedRedis, prefix: str) -> None:
    """Redis away: the enactor keeps stalling on the faults it knew, and the error is counted,
    not passed over."""
    client = redis_client(Settings(redis_url=own_redis.url), retries=0)
    book = FaultBook(client, prefix)
    gate = FaultGate(book, AZ, events.MemoryHistory(WALL_CLOCK))
    fault = stall()
    try:
        await book.add(fault)
        await gate.refresh()
        assert [f.id for f in gate.faults] == [fault.id]
        swallowed = sample("dnsrace_errors_swallowed_total", where="fault_gate_read")

        await asyncio.to_thread(own_redis.stop)
        await gate.refresh()
        assert sample("dnsrace_errors_swallowed_total", where="fault_gate_read") == swallowed + 1
        assert [f.id for f in gate.faults] == [fault.id]
        assert gate.stall_pending(StallPoint.AFTER_CHECK, generation=1)
    finally:
        await client.aclose()
