"""loadgen.pacing.arrivals: the open model's arrivals in real time, and their stop."""

from __future__ import annotations

import asyncio
import time

from loadgen.pacing import arrivals


def test_arrivals_come_in_order_at_the_rate_until_stopped() -> None:
    async def take(count: int, rate: float) -> tuple[list[int], float]:
        stop = asyncio.Event()
        got: list[int] = []
        started = time.monotonic()
        async for k in arrivals(rate, stop):
            got.append(k)
            if len(got) == count:
                stop.set()
        return got, time.monotonic() - started

    got, took = asyncio.run(asyncio.wait_for(take(20, 200.0), timeout=10))
    assert got == list(range(20))
    assert took >= 19 / 200 - 0.002  # the 20th is due 95 ms after the first, never earlier


def test_a_stop_ends_the_wait_for_the_next_arrival_at_once() -> None:
    async def first_then_stop() -> tuple[list[int], float]:
        stop = asyncio.Event()
        got: list[int] = []
        started = time.monotonic()
        async for k in arrivals(0.1, stop):
            got.append(k)
            asyncio.get_running_loop().call_later(0.05, stop.set)  # the next is 10 s away
        return got, time.monotonic() - started

    got, took = asyncio.run(asyncio.wait_for(first_then_stop(), timeout=5))
    assert got == [0] and took < 5


def test_nothing_arrives_once_stopped() -> None:
    async def stopped_before() -> list[int]:
        stop = asyncio.Event()
        stop.set()
        return [k async for k in arrivals(1000.0, stop)]

    assert asyncio.run(stopped_before()) == []
