"""The launch record and Network Manager's backlog in a real Redis (the issue 14/15 contract)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from services.store.launches import (
    Launch,
    LaunchRecordError,
    append_launch,
    netmgr_backlog,
    read_launches,
    set_netmgr_backlog,
)


async def test_launches_are_read_back_in_order_after_an_id(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    key = f"{prefix}:launches"
    first = Launch("i-0001", "use1-az1", "dwfm1-use1-az1-0000", 1000)
    second = Launch("i-0002", "use1-az4", "dwfm2-use1-az4-0002", 1005)
    first_id = await append_launch(redis_client, first, key=key)
    await append_launch(redis_client, second, key=key)
    assert [launch for _, launch in await read_launches(redis_client, key=key)] == [first, second]
    assert [launch for _, launch in await read_launches(redis_client, first_id, key=key)] == [
        second
    ]
    # The fields as Network Manager sees them on the wire.
    (_, fields), *_ = await redis_client.xrange(key)
    assert fields == {
        "instance_id": "i-0001",
        "az": "use1-az1",
        "droplet": "dwfm1-use1-az1-0000",
        "at_ms": "1000",
    }


async def test_a_malformed_entry_is_skipped_not_fatal(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    key = f"{prefix}:launches"
    await redis_client.xadd(key, {"instance_id": "i-1", "az": "use1-az1"})
    good = Launch("i-2", "use1-az2", "d", 7)
    await append_launch(redis_client, good, key=key)
    assert [launch for _, launch in await read_launches(redis_client, key=key)] == [good]
    with pytest.raises(LaunchRecordError):
        Launch.parse({"instance_id": "i", "az": "a", "droplet": "d", "at_ms": "soon"})


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
