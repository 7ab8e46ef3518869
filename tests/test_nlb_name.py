"""The NLB's DNS name written through the real zone store (Redis): one A record per AZ node in
the name, and none once failover removed every AZ."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from services.core.records import decode_addresses
from services.nlb.name import name_batch, nlb_name
from services.runtime.clock import WALL_CLOCK
from services.store.zone import ZoneKeys, ZoneStore

NODES = {"use1-az1": "127.50.0.1", "use1-az2": "127.51.0.1", "use1-az4": "127.52.0.1"}


def test_bad_names_and_unknown_azs_are_refused() -> None:
    with pytest.raises(ValueError, match="NLB name"):
        nlb_name("a.b")
    with pytest.raises(ValueError, match="no NLB node"):
        name_batch("api", ["use1-az9"], NODES)


async def test_failover_changes_the_names_records_in_the_zone(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    store = ZoneStore(redis_client, ZoneKeys(prefix), clock=WALL_CLOCK)
    key = f"{nlb_name('api')}|A"
    await store.apply(name_batch("api", list(NODES), NODES))
    held = (await store.get_many([key]))[key]
    assert held is not None and {a.ip for a in decode_addresses(held)} == set(NODES.values())
    await store.apply(name_batch("api", ["use1-az4"], NODES))
    held = (await store.get_many([key]))[key]
    assert held is not None and [a.ip for a in decode_addresses(held)] == ["127.52.0.1"]
    await store.apply(name_batch("api", [], NODES))
    held = (await store.get_many([key]))[key]
    assert held is not None and decode_addresses(held) == ()
