"""The 2025 race, played step by step by three real Enactor objects on a real Redis.

No timing luck: each step waits on the history (an enactor stalled, a round completed),
and faults are real entries in the fault book that the enactors' gates follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.config import ALL_PROTECTIONS, Protection, Settings
from services.core import events, names
from services.core.balancers import LoadBalancer
from services.core.faults import Fault, FaultType, StallParams, StallPoint
from services.core.plans import make_plan
from services.enactor.decisions import Policy
from services.enactor.enactor import Enactor
from services.enactor.gate import FaultGate
from services.runtime.clock import WALL_CLOCK
from services.store.faults import FaultBook
from services.store.plans import PlanStore
from services.store.zone import ZoneKeys, ZoneStore

LBS = tuple(LoadBalancer(f"lb-{i}", names.AZS[i % 3], f"127.0.10.{i + 1}", 100)
            for i in range(6))
ENDPOINTS = names.endpoints(2)
A, B, C = names.AZS


class Cell:
    """Three enactors, a plan store and a fault book under one key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str,
                 protections: frozenset[Protection], window: int) -> None:
        self.zone = ZoneStore(client, ZoneKeys(prefix), clock=WALL_CLOCK)
        self.plans = PlanStore(client, prefix)
        self.book = FaultBook(client, prefix)
        self.sink = events.MemoryHistory(WALL_CLOCK)
        self.gates = {az: FaultGate(self.book, az, self.sink) for az in names.AZS}
        self.enactors = {
            az: Enactor(az, Policy(az, protections, cleanup_age=3), self.zone, self.plans,
                        self.gates[az], self.sink, backoff_base_s=0.001, backoff_max_s=0.01,
                        window=window)
            for az in names.AZS
        }
        self.generation = 0

    async def publish(self, count: int = 1) -> None:
        for _ in range(count):
            self.generation += 1
            await self.plans.publish(make_plan(self.generation, 0, ENDPOINTS, LBS, {}))

    async def stall(self, az: str, point: StallPoint) -> Fault:
        fault = Fault.new(FaultType.ENACTOR_STALL, az, 60, StallParams(point))
        await self.book.add(fault)
        await self.gates[az].refresh()
        return fault

    async def release(self, az: str, fault: Fault) -> None:
        await self.book.remove(fault.id)
        await self.gates[az].refresh()

    async def until(self, seen: Callable[[events.Event], bool], timeout_s: float = 5) -> None:
        await self.sink.wait_for(seen, timeout_s)


@pytest.fixture(params=[1, Settings().enactor_window], ids=["one_at_a_time", "windowed"])
async def cells(redis_client: aioredis.Redis, prefix: str, request: pytest.FixtureRequest
                ) -> AsyncIterator[Callable[[frozenset[Protection]], Cell]]:
    yield lambda protections: Cell(redis_client, prefix, protections, request.param)


def stalled(az_point: StallPoint) -> Callable[[events.Event], bool]:
    return lambda e: isinstance(e, events.Stalled) and e.point == az_point


async def play_race(cell: Cell) -> None:
    """The choreography of October 2025, as DESIGN.md tells it."""
    await cell.publish()
    await cell.enactors[B].run_round()                      # plan 1 live everywhere
    stall_a = await cell.stall(A, StallPoint.AFTER_CHECK)
    await cell.publish()
    slow = asyncio.create_task(cell.enactors[A].run_round())  # A checks plan 2, stalls
    await cell.until(stalled(StallPoint.AFTER_CHECK))
    await cell.publish(6)                                    # the planner moves far ahead
    stall_b = await cell.stall(B, StallPoint.DURING_CLEANUP)
    fast = asyncio.create_task(cell.enactors[B].run_round())  # B applies plan 8 ...
    await cell.until(stalled(StallPoint.DURING_CLEANUP))     # ... and reaches clean-up
    await cell.release(A, stall_a)
    await slow                                               # A flips back to plan 2
    await cell.release(B, stall_b)
    await fast                                               # B deletes "old" plan 2
    await cell.publish()
    await cell.enactors[C].run_round()                       # the automation tries again


async def test_legacy_race_empties_the_regional_name_and_nobody_can_repair_it(
        cells: Callable[[frozenset[Protection]], Cell]) -> None:
    cell = cells(frozenset())
    await play_race(cell)
    snap = await cell.zone.snapshot()
    alias = snap.alias(names.REGIONAL)
    assert alias is not None and alias.generation == 2           # flipped back: I2
    assert snap.addresses(alias.target) is None                   # its tree is gone: I1
    deleted = [e for e in cell.sink.events if isinstance(e, events.TreeDeleted) and e.live]
    assert names.tree_name(2, names.REGIONAL) in {e.tree for e in deleted}  # I3
    rejected = [e for e in cell.sink.events
                if isinstance(e, events.BatchRejected) and e.endpoint == names.REGIONAL]
    assert rejected and {e.reason for e in rejected} == {"alias_target_missing"}
    assert rejected[-1].generation == 9                           # the newest plan fails too


async def test_a_round_whose_every_batch_is_rejected_is_not_counted_as_a_plan_applied(
        cells: Callable[[frozenset[Protection]], Cell]) -> None:
    # 'dnsrace watch' reads plans applied per second: through the outage it must stay flat.
    cell = cells(frozenset())
    await play_race(cell)
    before = REGISTRY.get_sample_value("dnsrace_enactor_plans_applied_total", {"az": C})
    await cell.publish()
    report = await cell.enactors[C].run_round()
    assert report.committed == 0 and sum(report.rejected.values()) == len(ENDPOINTS)
    assert REGISTRY.get_sample_value("dnsrace_enactor_plans_applied_total",
                                     {"az": C}) == before


async def test_safe_mode_survives_the_same_choreography(
        cells: Callable[[frozenset[Protection]], Cell]) -> None:
    cell = cells(frozenset(ALL_PROTECTIONS))
    await play_race(cell)
    snap = await cell.zone.snapshot()
    for endpoint in ENDPOINTS:
        alias = snap.alias(endpoint)
        assert alias is not None and alias.generation == 9
        assert snap.addresses(alias.target)
    assert not [e for e in cell.sink.events if isinstance(e, events.TreeDeleted) and e.live]
    regressions = [e for e in cell.sink.events
                   if isinstance(e, events.BatchCommitted) and e.generation < e.previous]
    assert regressions == []
