"""The zone store (our Route 53) over Redis.

Every write is one change batch run by ``lua/change_batch.lua``: all or nothing, a serial that
increases per committed batch, and a notification on a pub/sub channel so readers never poll.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aioredis

from services import names
from services.records import (
    Action,
    BatchRejected,
    Change,
    ChangeBatch,
    Committed,
    RecordSet,
    RecordType,
    RejectReason,
    ZoneSnapshot,
    canonical,
)

log = logging.getLogger(__name__)


def _script(name: str) -> str:
    return resources.files("services").joinpath("lua", name).read_text()


@dataclass(frozen=True)
class ZoneKeys:
    """Redis key names of one zone, under a prefix (tests and the explorer use their own)."""

    prefix: str = "dnsrace"

    @property
    def rrsets(self) -> str:
        return f"{self.prefix}:zone:rrsets"

    @property
    def serial(self) -> str:
        return f"{self.prefix}:zone:serial"

    @property
    def refs(self) -> str:
        return f"{self.prefix}:zone:refs"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:zone:changes"


@dataclass(frozen=True)
class ZoneChange:
    """One notification: the batch with this serial changed these record-set keys."""

    serial: int
    at_ms: int
    keys: tuple[str, ...]


@dataclass(frozen=True)
class EndpointRecords:
    """What one round-trip reads about an endpoint: its records and whether aliases resolve."""

    alias: str | None
    alias_target: str | None
    rollback: str | None
    rollback_target: str | None
    lock: str | None
    tree: str | None


_READ_ENDPOINT = """
local function target_value(alias)
  if not alias then return false end
  return redis.call('HGET', KEYS[1], cjson.decode(alias).target .. '|A')
end
local alias = redis.call('HGET', KEYS[1], ARGV[1] .. '|ALIAS')
local rollback = redis.call('HGET', KEYS[1], ARGV[2] .. '|ALIAS')
local lock = redis.call('HGET', KEYS[1], ARGV[3] .. '|TXT')
local tree = redis.call('HGET', KEYS[1], ARGV[4] .. '|A')
return {alias, target_value(alias), rollback, target_value(rollback), lock, tree}
"""


class ZoneStore:
    def __init__(self, client: aioredis.Redis, keys: ZoneKeys | None = None) -> None:
        self.client = client
        self.keys = keys or ZoneKeys()
        self._apply = client.register_script(_script("change_batch.lua"))
        self._read_endpoint = client.register_script(_READ_ENDPOINT)

    async def apply(self, batch: ChangeBatch) -> Committed:
        """Commit a batch atomically, or raise BatchRejected saying which change failed."""
        raw = await self._apply(keys=[self.keys.rrsets, self.keys.serial, self.keys.refs],
                                args=[batch.to_json(), self.keys.channel])
        result = json.loads(raw)
        if result["ok"]:
            live = result["live"] if isinstance(result["live"], list) else []
            return Committed(int(result["serial"]), int(result["ms"]), tuple(live))
        index = int(result["index"])
        change = batch.changes[index - 1] if index else None
        raise BatchRejected(RejectReason(result["reason"]), index, result["detail"], change)

    async def snapshot(self) -> ZoneSnapshot:
        """The whole zone and its serial, read atomically."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.serial)
            pipe.hgetall(self.keys.rrsets)
            serial, rrsets = await pipe.execute()
        return ZoneSnapshot(int(serial or 0), dict(rrsets))

    async def get_many(self, keys: list[str]) -> dict[str, str | None]:
        if not keys:
            return {}
        values = await self.client.hmget(self.keys.rrsets, keys)
        return dict(zip(keys, values, strict=True))

    async def serial(self) -> int:
        return int(await self.client.get(self.keys.serial) or 0)

    async def read_endpoint(self, endpoint: str, tree: str) -> EndpointRecords:
        values = await self._read_endpoint(
            keys=[self.keys.rrsets],
            args=[endpoint, names.rollback_name(endpoint), names.lock_name(endpoint), tree],
        )
        alias, alias_target, rollback, rollback_target, lock, tree_value = (
            v if v else None for v in values
        )
        return EndpointRecords(alias, alias_target, rollback, rollback_target, lock, tree_value)

    async def trees(self) -> dict[str, str]:
        """Every tree record set in the zone: tree name -> value."""
        found: dict[str, str] = {}
        async for key, value in self.client.hscan_iter(
            self.keys.rrsets, match=f"{names.TREE_PREFIX}*|A", count=1000
        ):
            found[key.rsplit("|", 1)[0]] = value
        return found

    async def references(self) -> dict[str, int]:
        """Record-set names that aliases name, with how many aliases name each."""
        return {k: int(v) for k, v in (await self.client.hgetall(self.keys.refs)).items()}

    async def changes(self) -> AsyncGenerator[ZoneChange, None]:
        """Change notifications as they are published (subscribe before taking a snapshot)."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.keys.channel)
        try:
            async for message in pubsub.listen():
                data = json.loads(message["data"])
                keys = data["keys"] if isinstance(data["keys"], list) else []
                yield ZoneChange(int(data["serial"]), int(data["ms"]), tuple(keys))
        finally:
            await pubsub.aclose()


def zone_apex_batch(ttl_s: int, negative_ttl_s: int) -> ChangeBatch:
    """The SOA and NS of the zone, created once."""
    soa = canonical({
        "mname": f"ns1.{names.ZONE}",
        "rname": f"hostmaster.{names.ZONE}",
        "refresh": 60, "retry": 10, "expire": 3600, "minimum": negative_ttl_s,
    })
    ns = canonical({"names": [f"ns1.{names.ZONE}"]})
    glue = canonical({"records": [{"ip": "127.0.0.1", "weight": 1}]})
    return ChangeBatch((
        Change(Action.CREATE, RecordSet(names.ZONE, RecordType.SOA, soa)),
        Change(Action.CREATE, RecordSet(names.ZONE, RecordType.NS, ns)),
        Change(Action.CREATE, RecordSet(f"ns1.{names.ZONE}", RecordType.A, glue)),
    ), comment=f"zone apex, ttl {ttl_s}")


async def ensure_apex(store: ZoneStore, ttl_s: int, negative_ttl_s: int) -> None:
    """Create SOA and NS unless present (several processes may race to do it: one wins)."""
    try:
        await store.apply(zone_apex_batch(ttl_s, negative_ttl_s))
    except BatchRejected as e:
        if e.reason is not RejectReason.CREATE_EXISTS:
            raise
