"""The DNS server applies a storm of zone changes in bounded groups (issue 16, item 4): queries
are answered between groups, and no group ever holds part of a batch, so no name is ever served
with its alias flipped and its tree missing (a mixed generation of one endpoint)."""

from __future__ import annotations

import asyncio

from dns_server.sync import GROUP_MAX, ZoneSync
from dns_server.zone import Zone
from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    RecordSet,
    RecordType,
    WeightedAddress,
    a_records,
    alias_record,
)
from services.runtime.redis_server import EmbeddedRedis
from services.store.zone import ZoneStore

ENDPOINTS = [f"e{i}.example" for i in range(3 * GROUP_MAX)]


def _tree(generation: int, endpoint: str) -> RecordSet:
    return a_records(f"plan-{generation}.{endpoint}",
                     [WeightedAddress(f"127.0.{generation}.1", 10)])


def _flip(generation: int, endpoint: str) -> ChangeBatch:
    """Plan ``generation`` for one endpoint: the old tree gone first, then the new tree and
    the alias flip (so any part of the batch alone would leave the alias naming no tree)."""
    return ChangeBatch((
        Change(Action.DELETE, _tree(generation - 1, endpoint)),
        Change(Action.CREATE, _tree(generation, endpoint)),
        Change(Action.UPSERT, alias_record(endpoint, Alias(_tree(generation, endpoint).name,
                                                           generation))),
    ))


async def test_a_storm_of_flips_is_applied_in_groups_never_half_a_batch(
        zone: ZoneStore, redis_server: EmbeddedRedis) -> None:
    await zone.apply(ChangeBatch(tuple(
        change for e in ENDPOINTS for change in (
            Change(Action.CREATE, _tree(1, e)),
            Change(Action.UPSERT, alias_record(e, Alias(_tree(1, e).name, 1)))))))
    groups: list[int] = []
    half_applied: list[str] = []

    def listener(served: Zone, touched: frozenset[str] | None) -> None:
        if touched is None:
            return  # the first snapshot
        groups.append(len(touched))
        for endpoint in ENDPOINTS:  # what a query between two groups would be answered from
            alias = served.alias(endpoint)
            if alias is None or served.get(alias.target, RecordType.A) is None:
                half_applied.append(f"{endpoint} at serial {served.serial}")

    sync = ZoneSync(redis_server.url, zone.keys, listener=listener)
    task = asyncio.create_task(sync.run())
    try:
        await asyncio.wait_for(sync.loaded.wait(), 10)
        outcomes = await zone.apply_many([_flip(2, e) for e in ENDPOINTS])
        last = max(o.serial for o in outcomes if not isinstance(o, Exception))
        await sync.wait_for_serial(last, timeout_s=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert half_applied == []
    # Each batch touches its endpoint and two trees; a group holds at most GROUP_MAX batches.
    assert groups and max(groups) <= 3 * GROUP_MAX
    assert sum(groups) == 3 * len(ENDPOINTS)
    assert sync.zone is not None
    assert all(sync.zone.alias(e) == Alias(_tree(2, e).name, 2) for e in ENDPOINTS)
