"""The launch record and Network Manager's backlog in a real Redis (the issue 14/15 contract)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.store.launches import (
    Launch,
    LaunchRecordError,
    address_of,
    append_launch,
    netmgr_backlog,
    read_launches,
    set_netmgr_backlog,
)


async def test_launches_are_read_back_in_order_after_an_id(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    key, slots = f"{prefix}:launches", f"{prefix}:slots"
    first_id, first = await append_launch(
        redis_client, Launch("i-0001", "use1-az1", "dwfm1-use1-az1-0000", 1000), key, slots)
    _, second = await append_launch(
        redis_client, Launch("i-0002", "use1-az4", "dwfm2-use1-az4-0002", 1005), key, slots)
    _, third = await append_launch(
        redis_client, Launch("i-0003", "use1-az1", "dwfm1-use1-az1-0001", 1010), key, slots)
    # Each AZ numbers its own instances: their addresses.
    assert (first.slot, second.slot, third.slot) == (0, 0, 1)
    assert [launch for _, launch in await read_launches(redis_client, key=key)] == [
        first, second, third]
    assert [launch for _, launch in await read_launches(redis_client, first_id, key=key)] == [
        second, third]
    # The fields as Network Manager sees them on the wire.
    (_, fields), *_ = await redis_client.xrange(key)
    assert fields == {
        "instance_id": "i-0001",
        "az": "use1-az1",
        "droplet": "dwfm1-use1-az1-0000",
        "at_ms": "1000",
        "slot": "0",
    }


async def test_concurrent_launches_never_share_a_slot(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """Two instances on one address would answer each other's health checks."""
    key, slots = f"{prefix}:launches", f"{prefix}:slots"
    connections = asyncio.Semaphore(8)  # the test client's pool is small

    async def launch(n: int) -> tuple[str, Launch]:
        async with connections:
            return await append_launch(redis_client, Launch(f"i-{n}", "use1-az2", "d", n),
                                       key, slots)

    appended = await asyncio.gather(*(launch(n) for n in range(200)))
    assert sorted(launch.slot or 0 for _, launch in appended) == list(range(200))
    read = {launch.instance_id: launch.slot for _, launch in await read_launches(
        redis_client, key=key, count=1000)}
    assert read == {launch.instance_id: launch.slot for _, launch in appended}


def test_the_address_comes_from_the_az_and_the_slot_and_none_without_one() -> None:
    """The AZ's instances and the NLB both call this: they agree, and skip the same launches."""
    assert address_of(Launch("i-1", "use1-az2", "d-1", 0, slot=0)) == "127.41.0.1"
    assert address_of(Launch("i-2", "use1-az4", "d-1", 0, slot=251)) == "127.42.1.2"
    for launch in (Launch("i-3", "use1-az1", "d-1", 0),  # never appended: no slot
                   Launch("i-4", "use1-az1", "d-1", 0, slot=250 * 256),  # past the last
                   Launch("i-5", "use1-az9", "d-1", 0, slot=0)):  # no such AZ
        assert address_of(launch) is None


async def test_a_malformed_entry_is_skipped_not_fatal(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    key = f"{prefix}:launches"
    await redis_client.xadd(key, {"instance_id": "i-1", "az": "use1-az1"})
    _, good = await append_launch(redis_client, Launch("i-2", "use1-az2", "d", 7), key,
                                  f"{prefix}:slots")
    assert [launch for _, launch in await read_launches(redis_client, key=key)] == [good]
    for bad in ({"at_ms": "soon", "slot": "0"}, {"at_ms": "1"}, {"at_ms": "1", "slot": "-1"}):
        with pytest.raises(LaunchRecordError):
            Launch.parse({"instance_id": "i", "az": "a", "droplet": "d", **bad})


async def test_backlog_is_zero_when_absent_and_refuses_garbage(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    key = f"{prefix}:backlog"
    assert await netmgr_backlog(redis_client, key=key) == 0
    await set_netmgr_backlog(redis_client, 42, key=key)
    assert await netmgr_backlog(redis_client, key=key) == 42
    with pytest.raises(LaunchRecordError):
        await set_netmgr_backlog(redis_client, -1, key=key)
    await redis_client.set(key, "lots")
    with pytest.raises(LaunchRecordError, match="not an integer"):
        await netmgr_backlog(redis_client, key=key)
