"""The change-batch rules, against a real Redis running the production Lua script."""

from __future__ import annotations

import asyncio

import pytest

from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    Committed,
    EndpointRecords,
    GenerationFence,
    Rejected,
    RejectReason,
    WeightedAddress,
    a_records,
    alias_record,
)
from services.store.zone import ZoneStore
from tests.conftest import INCIDENT_MS, ManualClock

TREE = a_records("plan-1.x.example", [WeightedAddress("127.0.10.1", 10)])
TREE2 = a_records("plan-2.x.example", [WeightedAddress("127.0.10.2", 20)])
ALIAS1 = alias_record("x.example", Alias("plan-1.x.example", 1))
ALIAS2 = alias_record("x.example", Alias("plan-2.x.example", 2))
YEAR_2100_MS = 4_102_444_800_000


def batch(*changes: Change, **kw: object) -> ChangeBatch:
    return ChangeBatch(tuple(changes), **kw)  # type: ignore[arg-type]


async def test_create_then_alias_in_one_batch_commits_and_bumps_serial(zone: ZoneStore) -> None:
    before = await zone.serial()
    done = await zone.apply(batch(Change(Action.CREATE, TREE), Change(Action.UPSERT, ALIAS1)))
    assert done.serial == before + 1
    snap = await zone.snapshot()
    assert snap.serial == done.serial
    assert snap.alias("x.example") == Alias("plan-1.x.example", 1)
    assert await zone.references() == {"plan-1.x.example": 1}


async def test_rejected_batch_writes_nothing(zone: ZoneStore) -> None:
    await zone.apply(batch(Change(Action.CREATE, TREE)))
    before = await zone.snapshot()
    with pytest.raises(Rejected) as err:
        await zone.apply(batch(Change(Action.CREATE, TREE2), Change(Action.CREATE, TREE)))
    assert err.value.reason is RejectReason.CREATE_EXISTS
    assert err.value.index == 2
    assert err.value.change == Change(Action.CREATE, TREE)
    assert await zone.snapshot() == before


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ((Change(Action.DELETE, TREE2),), RejectReason.DELETE_MISSING),
        ((Change(Action.DELETE, a_records(TREE.name, [])),), RejectReason.DELETE_MISMATCH),
        ((Change(Action.UPSERT, ALIAS2),), RejectReason.ALIAS_TARGET_MISSING),
        ((Change(Action.DELETE, TREE, if_unreferenced=True),), RejectReason.TREE_REFERENCED),
    ],
)
async def test_each_rule_rejects_with_its_reason(
    zone: ZoneStore, changes: tuple[Change, ...], reason: RejectReason
) -> None:
    await zone.apply(batch(Change(Action.CREATE, TREE), Change(Action.UPSERT, ALIAS1)))
    before = await zone.snapshot()
    with pytest.raises(Rejected) as err:
        await zone.apply(batch(*changes))
    assert err.value.reason is reason
    assert await zone.snapshot() == before


async def test_generation_fence_refuses_an_older_flip(zone: ZoneStore) -> None:
    await zone.apply(batch(Change(Action.CREATE, TREE2), Change(Action.UPSERT, ALIAS2)))
    stale = batch(Change(Action.CREATE, TREE), Change(Action.UPSERT, ALIAS1),
                  fences=(GenerationFence("x.example", 1),))
    with pytest.raises(Rejected) as err:
        await zone.apply(stale)
    assert err.value.reason is RejectReason.GENERATION_FENCE
    assert (await zone.snapshot()).alias("x.example") == Alias("plan-2.x.example", 2)


@pytest.mark.parametrize("now_ms", [INCIDENT_MS, YEAR_2100_MS], ids=["past", "future"])
async def test_a_lease_is_judged_at_the_given_time_not_the_wall_clock(
        zone: ZoneStore, clock: ManualClock, now_ms: int) -> None:
    """The lease rule of change_batch.lua compares ``not_after_ms`` with the store's clock:
    a clock behind the wall clock commits a lease the wall clock would call over, a clock
    ahead of it refuses one the wall clock would call running."""
    clock.now = now_ms
    with pytest.raises(Rejected) as err:
        await zone.apply(batch(Change(Action.CREATE, TREE), not_after_ms=now_ms - 1))
    assert err.value.reason is RejectReason.LOCK_EXPIRED and err.value.index == 0
    assert err.value.detail == "lock lease ended 1 ms before the commit"
    assert (await zone.snapshot()).rrsets == {}
    done = await zone.apply(batch(Change(Action.CREATE, TREE), not_after_ms=now_ms))
    assert (await zone.snapshot()).serial == done.serial
    assert (await zone.snapshot()).get(TREE.name, TREE.type) == TREE.value


async def test_a_pipeline_judges_each_lease_at_the_given_time(
        zone: ZoneStore, clock: ManualClock) -> None:
    clock.now = YEAR_2100_MS
    ended, running = await zone.apply_many([
        batch(Change(Action.CREATE, TREE), not_after_ms=YEAR_2100_MS - 1),
        batch(Change(Action.CREATE, TREE2), not_after_ms=YEAR_2100_MS),
    ])
    assert isinstance(ended, Rejected) and ended.reason is RejectReason.LOCK_EXPIRED
    assert isinstance(running, Committed)
    assert set((await zone.snapshot()).rrsets) == {TREE2.key}


async def test_deleting_a_tree_leaves_the_alias_dangling(zone: ZoneStore) -> None:
    """Plain DELETE does not look at references: the 2025 hole, kept on purpose."""
    await zone.apply(batch(Change(Action.CREATE, TREE), Change(Action.UPSERT, ALIAS1)))
    await zone.apply(batch(Change(Action.DELETE, TREE)))
    snap = await zone.snapshot()
    assert snap.alias("x.example") is not None
    assert snap.addresses("plan-1.x.example") is None


async def test_every_commit_is_notified_with_its_keys_and_new_values(zone: ZoneStore) -> None:
    confirmed = asyncio.Event()

    async def resync() -> None:
        confirmed.set()  # where a reader takes its snapshot: Redis confirmed the subscription

    stream = zone.changes(resync=resync)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.wait_for(confirmed.wait(), 5)
    done = await zone.apply(batch(Change(Action.CREATE, TREE)))
    change = await asyncio.wait_for(first, 5)
    assert change.serial == done.serial
    assert change.keys == (TREE.key,)
    assert change.values == (TREE.value,)
    second = asyncio.ensure_future(anext(stream))
    await zone.apply(batch(Change(Action.DELETE, TREE)))
    deleted = await asyncio.wait_for(second, 5)
    assert (deleted.serial, deleted.keys, deleted.values) == (done.serial + 1, (TREE.key,), (None,))
    await stream.aclose()


async def test_commit_reports_a_live_tree_it_deleted(zone: ZoneStore) -> None:
    await zone.apply(batch(Change(Action.CREATE, TREE), Change(Action.UPSERT, ALIAS1)))
    done = await zone.apply(batch(Change(Action.DELETE, TREE)))
    assert done.live_deleted == ("plan-1.x.example",)
    await zone.apply(batch(Change(Action.CREATE, TREE2)))
    assert (await zone.apply(batch(Change(Action.DELETE, TREE2)))).live_deleted == ()


async def test_a_pipeline_of_batches_commits_each_alone_and_returns_refusals_as_values(
        zone: ZoneStore) -> None:
    before = await zone.serial()
    outcomes = await zone.apply_many([
        batch(Change(Action.CREATE, TREE), Change(Action.UPSERT, ALIAS1)),
        batch(Change(Action.CREATE, TREE2), Change(Action.CREATE, TREE)),  # refused whole
        batch(Change(Action.CREATE, TREE2)),
    ])
    first, refused, third = outcomes
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.CREATE_EXISTS
    assert refused.change == Change(Action.CREATE, TREE)
    assert isinstance(first, Committed) and isinstance(third, Committed)
    assert (first.serial, third.serial) == (before + 1, before + 2)
    snap = await zone.snapshot()
    assert snap.get(TREE2.name, TREE2.type) == TREE2.value  # by the third batch, not the second
    assert await zone.apply_many([]) == []


async def test_a_window_read_is_each_endpoint_read_alone(zone: ZoneStore) -> None:
    await zone.apply(batch(Change(Action.CREATE, TREE), Change(Action.UPSERT, ALIAS1),
                           Change(Action.CREATE, TREE2)))
    requests = [("x.example", "plan-2.x.example"), ("y.example", "plan-1.y.example"),
                ("x.example", "plan-3.x.example")]
    views = await zone.read_endpoints(requests)
    assert views == [await zone.read_endpoint(e, t) for e, t in requests]
    assert views[0] == EndpointRecords(ALIAS1.value, TREE.value, None, None, None, TREE2.value)
    assert views[1] == EndpointRecords(None, None, None, None, None, None)
    assert await zone.read_endpoints([]) == []


async def test_a_window_read_returns_values_exactly_as_stored(zone: ZoneStore) -> None:
    """The window's values go back joined by line breaks; a value holding one (no writer of
    ours makes it) or an alias spelled otherwise (escaped characters) still reads exactly."""
    odd_tree = '{"records":[{"ip":"127.0.10.3","weight":1}],\n "note":"two lines"}'
    escaped = '{"generation":1,"target":"plan-1.\\u0078.example"}'  # target plan-1.x.example
    await zone.apply(batch(Change(Action.CREATE, TREE)))
    await zone.client.hset(zone.keys.rrsets, mapping={"plan-4.y.example|A": odd_tree,
                                                      "y.example|ALIAS": escaped})
    views = await zone.read_endpoints([("y.example", "plan-4.y.example"),
                                       ("x.example", "plan-1.x.example")])
    assert views[0] == EndpointRecords(escaped, TREE.value, None, None, None, odd_tree)
    assert views[1] == EndpointRecords(None, None, None, None, None, TREE.value)


async def test_a_pipeline_of_batches_survives_redis_losing_its_scripts(zone: ZoneStore) -> None:
    await zone.apply(batch(Change(Action.CREATE, TREE)))
    await zone.client.script_flush()  # as after a restart: the scripts are gone
    outcomes = await zone.apply_many([batch(Change(Action.CREATE, TREE2)),
                                      batch(Change(Action.CREATE, TREE))])
    assert isinstance(outcomes[0], Committed)
    assert isinstance(outcomes[1], Rejected)
    assert outcomes[1].reason is RejectReason.CREATE_EXISTS
