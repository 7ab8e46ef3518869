"""The windowed walk: a window of endpoints per round-trip, and the one-at-a-time walk's outcome.

Which endpoints of a window must go alone is a pure function (tested without I/O). The rest
runs the real Enactor on the real Redis: the same zone and history as ``window=1``; a lock lost
inside a window retried for that endpoint alone; a stall naming an endpoint mid-window stalling
right before it, every endpoint before it committed; ``lock_delay`` backing off as the
one-at-a-time walk does; a stop during a lock retry ending the round stopped, no clean-up.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.config import ALL_PROTECTIONS, Protection
from services.core import events, names
from services.core.balancers import Health, LoadBalancer
from services.core.faults import Fault, FaultType, StallParams, StallPoint
from services.core.plans import make_plan
from services.core.records import (
    Action,
    Change,
    ChangeBatch,
    EndpointRecords,
    Lock,
    RecordSet,
    RecordType,
    Rejected,
    RejectReason,
    WeightedAddress,
    a_records,
    lock_record,
)
from services.enactor.decisions import (
    Backoff,
    Commit,
    Policy,
    Refuse,
    RefuseReason,
    Skip,
    SkipReason,
    window_cut,
)
from services.enactor.enactor import Enactor, RoundOutcome, RoundReport
from services.enactor.gate import FaultGate
from services.store.faults import FaultBook
from services.store.plans import PlanStore
from services.store.zone import ZoneKeys, ZoneStore
from tests.conftest import INCIDENT_MS, ManualClock, wait_until

LBS = tuple(LoadBalancer(f"lb-{i}", names.AZS[i % 3], f"127.0.10.{i + 1}", 100)
            for i in range(12))
ADDRS = (WeightedAddress("127.0.10.1", 100),)
HALF_DOWN = {lb.ip: Health(False, 0) for lb in LBS[:6]}
"""Some endpoints keep most of their capacity, others lose more than half (safe: refused)."""
ENDPOINTS = names.endpoints(9)  # the three named endpoints and nine cells
A, B = names.AZS[:2]
CLOCK = ManualClock(INCIDENT_MS)
"""The zone's and the history's clock, stopped: a fenced batch's lease never runs out."""
NOW_S = INCIDENT_MS / 1000
"""The enactors' clock: the same time, in seconds."""


# -- which endpoints of a window go alone (no I/O) ----------------------------------------------

COMMIT = Commit(ChangeBatch((Change(Action.CREATE, RecordSet("x", RecordType.A, "{}")),)),
                previous=1, rollback=0, repairs=False)
SKIP = Skip(SkipReason.ALREADY_APPLIED)
REFUSE = Refuse(RefuseReason.NO_HEALTHY_ADDRESS, "none")


def test_a_window_without_held_locks_or_stalls_is_batched_whole() -> None:
    assert window_cut([COMMIT, SKIP, REFUSE, COMMIT], [False] * 4) == 4
    assert window_cut([], []) == 0


def test_a_held_lock_ends_the_window_before_it() -> None:
    assert window_cut([COMMIT, SKIP, Backoff(B), COMMIT], [False] * 4) == 2


def test_a_stall_ends_the_window_only_before_a_flip_it_names() -> None:
    # Index 1 is skipped (there is no flip to stall before); index 3 is a flip it names.
    assert window_cut([COMMIT, SKIP, COMMIT, COMMIT], [False, True, False, True]) == 3
    assert window_cut([COMMIT, COMMIT], [True, True]) == 0


# -- the real enactor on the real Redis ---------------------------------------------------------

class Cell:
    """One zone, plan store and fault book under a key prefix, and enactors on them."""

    def __init__(self, client: aioredis.Redis, prefix: str,
                 protections: frozenset[Protection] = frozenset(),
                 zone: ZoneStore | None = None) -> None:
        self.zone = zone or ZoneStore(client, ZoneKeys(prefix), clock=CLOCK)
        self.plans = PlanStore(client, prefix)
        self.book = FaultBook(client, prefix)
        self.sink = events.MemoryHistory(CLOCK)
        self.protections = protections
        self.generation = 0
        self.gates: dict[str, FaultGate] = {}
        self.sleeps: list[float] = []

    def enactor(self, window: int, az: str = A) -> Enactor:
        gate = self.gates.setdefault(az, FaultGate(self.book, az, self.sink))

        async def sleep(delay_s: float) -> None:  # a back-off, noted
            self.sleeps.append(round(delay_s, 4))
            await asyncio.sleep(delay_s)

        return Enactor(az, Policy(az, self.protections, cleanup_age=2), self.zone, self.plans,
                       gate, self.sink, backoff_base_s=0.001, backoff_max_s=0.01,
                       window=window, clock=lambda: NOW_S, sleep=sleep)

    async def publish(self, health: dict[str, Health] | None = None) -> None:
        self.generation += 1
        await self.plans.publish(make_plan(self.generation, 0, ENDPOINTS, LBS, health or {}))

    async def aliases(self) -> dict[str, int]:
        """Endpoint -> the generation its alias names (0: no alias)."""
        snap = await self.zone.snapshot()
        return {e: (a.generation if (a := snap.alias(e)) else 0) for e in ENDPOINTS}

    def events(self, kind: type[events.Event]) -> list[Any]:
        return [e for e in self.sink.events if isinstance(e, kind)]


def without_time(recorded: Sequence[events.Event]) -> list[dict[str, Any]]:
    return [{"kind": e.kind, **dataclasses.asdict(e), "at_ms": 0} for e in recorded]


@pytest.mark.parametrize("protections", [frozenset(), frozenset(ALL_PROTECTIONS)],
                         ids=["legacy", "safe"])
async def test_a_windowed_walk_leaves_the_zone_and_history_of_the_one_at_a_time_walk(
        redis_client: aioredis.Redis, prefix: str, protections: frozenset[Protection]) -> None:
    cells = {window: Cell(redis_client, f"{prefix}w{window}", protections)
             for window in (1, 5)}
    for window, cell in cells.items():
        enactor = cell.enactor(window)
        # Plans 1..5: trees built, aliases and rollbacks moved, trees deleted; plan 3 loses
        # half the fleet, which safe mode refuses for some endpoints and not others.
        for generation in range(1, 6):
            await cell.publish(HALF_DOWN if generation == 3 else None)
            await enactor.run_round()
    one, windowed = cells[1], cells[5]
    assert one.events(events.TreeDeleted)
    assert without_time(windowed.sink.events) == without_time(one.sink.events)
    zone_one, zone_windowed = await one.zone.snapshot(), await windowed.zone.snapshot()
    assert zone_windowed == zone_one
    assert set((await windowed.aliases()).values()) == {5}
    refused = {e.endpoint for e in one.events(events.PlanRefused)}
    if protections:  # refusals in the middle of windows, between flips
        assert refused and refused != set(ENDPOINTS[:len(refused)])
    else:
        assert not refused


@pytest.mark.parametrize("change", ["delete_changed", "delete_missing", "create_existing"])
async def test_the_zone_rejects_a_failed_change_to_a_lock_as_lock_conflict(
        zone: ZoneStore, change: str) -> None:
    lock = names.lock_name(ENDPOINTS[0])
    mine, theirs = lock_record(lock, Lock(A, 1)), lock_record(lock, Lock(B, 2))
    tree = a_records(names.tree_name(1, ENDPOINTS[0]), [])
    await zone.apply(ChangeBatch((Change(Action.CREATE, tree),)))
    if change != "delete_missing":
        await zone.apply(ChangeBatch((Change(Action.CREATE, theirs),)))
    batch = {"delete_changed": (Change(Action.DELETE, mine), Change(Action.CREATE, mine)),
             "delete_missing": (Change(Action.DELETE, mine), Change(Action.CREATE, mine)),
             "create_existing": (Change(Action.CREATE, mine),)}[change]
    with pytest.raises(Rejected) as lost:
        await zone.apply(ChangeBatch(batch))
    assert lost.value.reason is RejectReason.LOCK_CONFLICT
    assert lost.value.change == batch[0]
    # The same failures on a tree keep their own reasons (clean-up races, stale values).
    with pytest.raises(Rejected) as stale:
        await zone.apply(ChangeBatch((Change(Action.DELETE, a_records(tree.name, ADDRS)),)))
    assert stale.value.reason is RejectReason.DELETE_MISMATCH


class Interloper(ZoneStore):
    """The real zone store, where another enactor takes the locks of ``endpoints`` once, right
    after the windowed read of the first of them: the window's batches for them then delete
    lock values that are gone. B's lease lasts until ``until_ms`` (by default it is over by
    the time A retries: A may take them)."""

    def __init__(self, client: aioredis.Redis, keys: ZoneKeys, *endpoints: str,
                 until_ms: int = 0) -> None:
        super().__init__(client, keys, clock=CLOCK)
        self.endpoints = endpoints
        self.until_ms = until_ms
        self.armed = False
        self.reads: list[tuple[str, ...]] = []

    async def read_endpoints(self, requests: Sequence[tuple[str, str]]
                             ) -> list[EndpointRecords]:
        views = await super().read_endpoints(requests)
        self.reads.append(tuple(endpoint for endpoint, _ in requests))
        if self.armed and self.endpoints[0] in self.reads[-1]:
            self.armed = False
            taken = [Change(Action.UPSERT, lock_record(names.lock_name(e), Lock(B, self.until_ms)))
                     for e in self.endpoints]
            await self.apply(ChangeBatch(tuple(taken)))
        return views

    async def read_endpoint(self, endpoint: str, tree: str) -> EndpointRecords:
        self.reads.append((endpoint,))
        return await super().read_endpoint(endpoint, tree)


async def _second_round_interloped(client: aioredis.Redis, prefix: str, window: int,
                                   *contested: str) -> tuple[Cell, Interloper, RoundReport]:
    """Plan 1 applied, then plan 2's round, in which another enactor takes the ``contested``
    locks right after the window holding the first of them is read."""
    zone = Interloper(client, ZoneKeys(prefix), *contested)
    cell = Cell(client, prefix, zone=zone)
    enactor = cell.enactor(window)
    await cell.publish()
    await enactor.run_round()
    await cell.publish()
    zone.armed, zone.reads = True, []
    return cell, zone, await enactor.run_round()


WINDOWS = pytest.mark.parametrize("window", [len(ENDPOINTS), 4], ids=["one_window", "three"])
"""The whole plan in one window, or in three: the next read and decided while one commits."""


@WINDOWS
async def test_a_lock_lost_inside_a_window_is_retried_for_that_endpoint_alone(
        redis_client: aioredis.Redis, prefix: str, window: int) -> None:
    contested = ENDPOINTS[5]
    cell, zone, report = await _second_round_interloped(redis_client, prefix, window, contested)

    assert report.committed == len(ENDPOINTS) and report.rejected == {}
    assert set((await cell.aliases()).values()) == {2}
    lost = cell.events(events.LockLost)
    assert [(e.endpoint, e.reason) for e in lost] == [(contested, "lock_conflict")]
    assert cell.sleeps == [lost[0].backoff_s]
    committed = [e.endpoint for e in cell.events(events.BatchCommitted) if e.generation == 2]
    windows = [ENDPOINTS[i:i + window] for i in range(0, len(ENDPOINTS), window)]
    if window == len(ENDPOINTS):  # the staleness check, the window, the contested one alone
        assert zone.reads == [(names.REGIONAL,), ENDPOINTS, (contested,)]
        assert committed == [e for e in ENDPOINTS if e != contested] + [contested]
    else:  # the third window was read while the second committed, and is read again after
        assert zone.reads == [(names.REGIONAL,), *windows, (contested,), windows[2]]
        assert committed == [*windows[0], *(e for e in windows[1] if e != contested),
                             contested, *windows[2]]
    lock = (await cell.zone.snapshot()).get(names.lock_name(contested), RecordType.TXT)
    assert lock is not None and f'"holder":"{A}"' in lock


@WINDOWS
async def test_a_lock_held_inside_a_window_ends_the_window_there(
        redis_client: aioredis.Redis, prefix: str, window: int) -> None:
    cell = Cell(redis_client, prefix)
    await cell.publish()
    await cell.enactor(window=1).run_round()
    held = ENDPOINTS[6]
    lease = lock_record(names.lock_name(held), Lock(B, int(NOW_S * 1000) + 60_000))
    await cell.zone.apply(ChangeBatch((Change(Action.UPSERT, lease),)))
    await cell.publish()
    enactor = cell.enactor(window)
    walk = asyncio.create_task(enactor.run_round())

    async def backed_off() -> bool:
        return bool(cell.events(events.LockLost))

    await wait_until(backed_off, what="A to back off from the held lock")
    # Every endpoint before the held one is committed; the held one and those after wait.
    assert await cell.aliases() == {e: 2 if i < 6 else 1 for i, e in enumerate(ENDPOINTS)}
    await cell.zone.apply(ChangeBatch((Change(Action.DELETE, lease),)))  # B lets go
    report = await asyncio.wait_for(walk, 5)
    assert report.committed == len(ENDPOINTS)
    assert set((await cell.aliases()).values()) == {2}
    assert {e.endpoint for e in cell.events(events.LockLost)} == {held}
    committed = [e.endpoint for e in cell.events(events.BatchCommitted) if e.generation == 2]
    assert committed == list(ENDPOINTS)  # in plan order, as one at a time


@WINDOWS
async def test_a_stall_naming_an_endpoint_mid_window_stalls_right_before_its_flip(
        redis_client: aioredis.Redis, prefix: str, window: int) -> None:
    cell = Cell(redis_client, prefix)
    named = ENDPOINTS[5]
    fault = Fault.new(FaultType.ENACTOR_STALL, A, 60,
                      StallParams(StallPoint.BEFORE_FLIP, endpoint=named, min_generation=2))
    await cell.book.add(fault)
    enactor = cell.enactor(window)
    await enactor.gate.refresh()
    await cell.publish()
    await enactor.run_round()  # plan 1 is older than min_generation: no stall
    assert not cell.events(events.Stalled)

    await cell.publish()
    walk = asyncio.create_task(enactor.run_round())
    stalled = await cell.sink.wait_for(lambda e: isinstance(e, events.Stalled), 5)
    assert isinstance(stalled, events.Stalled)
    assert (stalled.endpoint, stalled.point, stalled.generation) == (
        named, StallPoint.BEFORE_FLIP, 2)
    # Everything before the named endpoint is committed and recorded before the stall.
    assert await cell.aliases() == {e: 2 if i < 5 else 1 for i, e in enumerate(ENDPOINTS)}
    before = cell.sink.events[:cell.sink.events.index(stalled)]
    assert [e.endpoint for e in before if isinstance(e, events.BatchCommitted)
            and e.generation == 2] == list(ENDPOINTS[:5])

    await cell.book.remove(fault.id)
    await enactor.gate.refresh()
    await asyncio.wait_for(walk, 5)
    assert set((await cell.aliases()).values()) == {2}
    assert [e.endpoint for e in cell.events(events.Resumed)] == [named]


@WINDOWS
async def test_a_lock_delay_makes_the_windowed_walk_back_off_endpoint_by_endpoint(
        redis_client: aioredis.Redis, prefix: str, window: int) -> None:
    cell = Cell(redis_client, prefix)
    fault = Fault.new(FaultType.LOCK_DELAY, A, 60)
    await cell.book.add(fault)
    enactor = cell.enactor(window)
    await enactor.gate.refresh()
    await cell.publish()
    walk = asyncio.create_task(enactor.run_round())

    async def backed_off_twice() -> bool:
        return len(cell.events(events.LockLost)) >= 2

    await wait_until(backed_off_twice, what="A to back off under the lock delay")
    assert set((await cell.aliases()).values()) == {0}  # nothing written while delayed
    await cell.book.remove(fault.id)
    await enactor.gate.refresh()
    report = await asyncio.wait_for(walk, 5)
    assert report.committed == len(ENDPOINTS)
    lost = cell.events(events.LockLost)
    assert {(e.endpoint, e.reason) for e in lost} == {(ENDPOINTS[0], "lock_delay")}
    assert [e.backoff_s for e in lost] == cell.sleeps


async def test_endpoints_lost_at_once_back_off_once_and_are_read_again(
        redis_client: aioredis.Redis, prefix: str) -> None:
    # Another enactor took a whole stretch of the window at once: one at a time, the walk
    # would have lost the first, backed off, and found the others free to take afterwards.
    contested = ENDPOINTS[3:8]
    cell, zone, report = await _second_round_interloped(redis_client, prefix, len(ENDPOINTS),
                                                        *contested)

    assert report.committed == len(ENDPOINTS) and report.rejected == {}
    assert set((await cell.aliases()).values()) == {2}
    lost = cell.events(events.LockLost)
    assert [(e.endpoint, e.reason) for e in lost] == [(contested[0], "lock_conflict")]
    assert zone.reads == [(names.REGIONAL,), ENDPOINTS, (contested[0],), contested[1:]]
    committed = [e.endpoint for e in cell.events(events.BatchCommitted) if e.generation == 2]
    assert committed == [e for e in ENDPOINTS if e not in contested] + list(contested)


@pytest.mark.parametrize("window", [1, 4, len(ENDPOINTS)])
@pytest.mark.parametrize("how", ["seen_held", "taken_after_the_read"])
async def test_a_stop_during_a_lock_retry_neither_counts_the_plan_applied_nor_cleans_up(
        redis_client: aioredis.Redis, prefix: str, window: int, how: str) -> None:
    # The last endpoint's lock is B's for a minute: A backs off and retries it alone, again
    # and again, until it is asked to stop. Plan 4's clean-up would delete plan 1's trees.
    last = ENDPOINTS[-1]
    lease_ms = int(NOW_S * 1000) + 60_000
    zone = Interloper(redis_client, ZoneKeys(prefix), last, until_ms=lease_ms)
    cell = Cell(redis_client, prefix, zone=zone)
    enactor = cell.enactor(window)
    for _ in range(3):
        await cell.publish()
        await enactor.run_round()
    if how == "seen_held":
        lease = lock_record(names.lock_name(last), Lock(B, lease_ms))
        await cell.zone.apply(ChangeBatch((Change(Action.UPSERT, lease),)))
    else:  # A's batch for it loses the lock (lock_conflict), then finds it held
        zone.armed = True
    await cell.publish()
    applied_before = REGISTRY.get_sample_value("dnsrace_enactor_plans_applied_total", {"az": A})
    walk = asyncio.create_task(enactor.run_round())

    async def retrying() -> bool:
        return len([e for e in cell.events(events.LockLost) if e.endpoint == last]) >= 2

    await wait_until(retrying, what="A to back off from the last endpoint's lock twice")
    enactor.stopping.set()
    report = await asyncio.wait_for(walk, 5)

    assert report.outcome is RoundOutcome.STOPPED
    assert report.committed == len(ENDPOINTS) - 1
    assert REGISTRY.get_sample_value("dnsrace_enactor_plans_applied_total",
                                     {"az": A}) == applied_before
    assert not [e for e in cell.events(events.RoundCompleted) if e.generation == 4]
    assert not cell.events(events.TreeDeleted)  # no clean-up ran, in any round
    trees = await cell.zone.trees()
    assert all(names.tree_name(1, e) in trees for e in ENDPOINTS)  # plan 1's trees are kept
    assert (await cell.aliases())[last] == 3
