"""The zone store (our Route 53) over Redis.

Every write is a change batch run by ``lua/change_batch.lua`` (several in one call): all or
nothing, a serial that increases per committed batch, and a notification on a pub/sub channel
so readers never poll.
The store is given a clock: its ``now_ms`` goes with every batch, and is the only time the
script decides by (a fenced batch's lease, ``not_after_ms``). The commit's own time that
comes back (``Committed.at_ms``, ``ZoneChange.at_ms``) is Redis ``TIME``: a measurement.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from services.core import names
from services.core.backoff import RetryBackoff
from services.core.clock import Clock
from services.core.records import (
    Action,
    Change,
    ChangeBatch,
    Committed,
    EndpointRecords,
    OldTrees,
    RecordSet,
    RecordType,
    Rejected,
    RejectReason,
    ZoneSnapshot,
    canonical,
)
from services.store import reads
from services.store.follow import FOLLOW_BACKOFF, Resync, follow

log = logging.getLogger(__name__)
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _script(name: str) -> str:
    return resources.files("services.store").joinpath("lua", name).read_text()


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
    def trees(self) -> str:
        """The tree index (kept by change_batch.lua): the generations that have trees, a sorted
        set; each generation's trees are the set under this key, ``:``, the generation."""
        return f"{self.prefix}:zone:trees"

    def trees_of(self, generation: int) -> str:
        """The set of generation ``generation``'s tree names."""
        return f"{self.trees}:{generation}"

    @property
    def trees_indexed(self) -> str:
        """Set once the tree index holds every tree (a zone from before the index has none)."""
        return f"{self.prefix}:zone:trees:indexed"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:zone:changes"

    @property
    def change_batch(self) -> tuple[str, str, str, str]:
        """change_batch.lua's KEYS, in order."""
        return (self.rrsets, self.serial, self.refs, self.trees)

    @property
    def stored(self) -> tuple[str, ...]:
        """Every key the zone is stored under but the sets of each generation's trees
        (:meth:`trees_of`)."""
        return (*self.change_batch, self.trees_indexed)


@dataclass(frozen=True)
class ZoneChange:
    """One notification: the batch with this serial set these record-set keys to these values
    (None: deleted)."""

    serial: int
    at_ms: int
    """When the batch committed, by Redis ``TIME`` (what propagation is measured from)."""
    keys: tuple[str, ...]
    values: tuple[str | None, ...]


BATCHES_PER_CALL = 32
"""Change batches per ``change_batch.lua`` call. The call runs without interruption: a slice
of a window keeps Redis from other clients (the DNS server's zone sync, other enactors) for
about a millisecond, not a whole window's tens; the pipeline of slices still sends a window in
one round-trip. Each batch is still its own atomic commit (one serial, one notification)."""


def _outcome(batch: ChangeBatch, result: dict[str, Any]) -> Committed | Rejected:
    """What change_batch.lua answered for ``batch``: the commit, or why it was refused."""
    if result["ok"]:
        live = result["live"] if isinstance(result["live"], list) else []
        return Committed(int(result["serial"]), int(result["ms"]), tuple(live))
    index = int(result["index"])
    change = batch.changes[index - 1] if index else None
    return Rejected(RejectReason(result["reason"]), index, result["detail"], change)


def _outcomes(batches: Sequence[ChangeBatch], raw: str) -> list[Committed | Rejected]:
    """One call's JSON array of outcomes, one per batch, in order."""
    results = json.loads(raw)
    if len(results) != len(batches):
        raise ValueError(f"change_batch.lua answered {len(results)} outcomes for "
                         f"{len(batches)} batches")
    return [_outcome(batch, result) for batch, result in zip(batches, results, strict=True)]


def _batches_json(batches: Sequence[ChangeBatch]) -> str:
    """The batches as change_batch.lua reads them: one JSON array."""
    return f"[{','.join(batch.to_json() for batch in batches)}]"


class ZoneStore:
    def __init__(self, client: aioredis.Redis, keys: ZoneKeys | None = None, *,
                 clock: Clock) -> None:
        self.client = client
        self.keys = keys or ZoneKeys()
        self.clock = clock
        self._apply = client.register_script(_script("change_batch.lua"))
        self._read_endpoints = client.register_script(reads.READ_ENDPOINTS)
        self._scan_trees = client.register_script(reads.SCAN_TREES)
        self._hgetall_lines = client.register_script(reads.HGETALL_LINES)
        self._old_trees = client.register_script(reads.OLD_TREES)
        self._hmget_lines = client.register_script(reads.HMGET_LINES)

    async def apply(self, batch: ChangeBatch) -> Committed:
        """Commit a batch atomically, or raise Rejected saying which change failed."""
        raw = await self._apply(keys=list(self.keys.change_batch),
                                args=[self.keys.channel, self.clock.now_ms(),
                                      _batches_json((batch,))])
        (outcome,) = _outcomes((batch,), raw)
        if isinstance(outcome, Rejected):
            raise outcome
        return outcome

    async def apply_many(self, batches: Sequence[ChangeBatch]
                         ) -> list[Committed | Rejected]:
        """Each batch its own atomic commit, in order, all sent in one round-trip.

        Not a transaction: each batch commits or is refused on its own, exactly as if it were
        applied alone (other clients' commands may run between two slices of
        :data:`BATCHES_PER_CALL` batches). The outcomes come back in the order of ``batches``,
        refusals as values rather than raised.
        """
        if not batches:
            return []
        slices = [batches[i:i + BATCHES_PER_CALL]
                  for i in range(0, len(batches), BATCHES_PER_CALL)]
        raws = await self._evalsha_slices(slices)
        missing = [i for i, raw in enumerate(raws) if isinstance(raw, NoScriptError)]
        if missing:  # Redis lost its scripts (it restarted): those slices did not run
            await self.client.script_load(self._apply.script)
            again = await self._evalsha_slices([slices[i] for i in missing])
            for i, raw in zip(missing, again, strict=True):
                raws[i] = raw
        for raw in raws:
            if isinstance(raw, Exception):
                raise raw
        return [outcome for part, raw in zip(slices, raws, strict=True)
                for outcome in _outcomes(part, raw)]

    async def _evalsha_slices(self, slices: Sequence[Sequence[ChangeBatch]]) -> list[Any]:
        """One pipeline of change_batch.lua calls, a slice of batches each; errors as values.
        No SCRIPT EXISTS first (redis-py's pipeline asks, one more round-trip): a missing
        script is seen in the reply. Every batch carries the clock's one reading as sent."""
        keys, channel, sha = self.keys, self.keys.channel, self._apply.sha
        now_ms = self.clock.now_ms()
        async with self.client.pipeline(transaction=False) as pipe:
            for part in slices:
                pipe.evalsha(sha, len(keys.change_batch), *keys.change_batch, channel, now_ms,
                             _batches_json(part))
            return list(await pipe.execute(raise_on_error=False))

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
        """One endpoint's records and whether its aliases resolve, in one round-trip."""
        return (await self._read_views(((endpoint, tree),)))[0]

    async def read_endpoints(self, requests: Sequence[tuple[str, str]]
                             ) -> list[EndpointRecords]:
        """``read_endpoint`` for each (endpoint, tree), all in one round-trip, in order."""
        return await self._read_views(requests) if requests else []

    async def _read_views(self, requests: Sequence[tuple[str, str]]) -> list[EndpointRecords]:
        args: list[str] = []
        for endpoint, tree in requests:
            args += (endpoint, names.rollback_name(endpoint), names.lock_name(endpoint), tree)
        values = [value or None for value in reads.flat(*await self._read_endpoints(
            keys=[self.keys.rrsets], args=[_COMPACT.encode(args)]))]
        return [EndpointRecords(*values[i:i + 6]) for i in range(0, len(values), 6)]

    async def trees(self) -> dict[str, str]:
        """Every tree record set in the zone: tree name -> value."""
        found: dict[str, str] = {}
        cursor = "0"
        while True:
            cursor, kind, payload = await self._scan_trees(
                keys=[self.keys.rrsets], args=[cursor, f"{names.TREE_PREFIX}*", 2000])
            flat = reads.flat(kind, payload)
            found.update(zip([field[:-2] for field in flat[0::2]], flat[1::2], strict=True))
            if cursor == "0":
                return found

    async def old_trees(self, below: int, newest: int) -> OldTrees:
        """Every tree of a generation below ``below`` with its value, and the ``newest`` newest
        generations that have trees: one atomic read of the tree index."""
        generations, kind, payload = await self._old_trees(
            keys=[self.keys.rrsets, self.keys.trees, self.keys.trees_indexed],
            args=[below, newest])
        flat = reads.flat(kind, payload)
        return OldTrees(dict(zip(flat[0::2], flat[1::2], strict=True)),
                        tuple(int(g) for g in generations.split(",") if g))

    async def references(self, of: Collection[str] | None = None) -> dict[str, int]:
        """Record-set names that aliases name, with how many aliases name each: every one, or
        those of ``of``."""
        if of is None:
            flat = reads.flat(*await self._hgetall_lines(keys=[self.keys.refs]))
        elif of:
            flat = reads.flat(*await self._hmget_lines(keys=[self.keys.refs], args=list(of)))
        else:
            return {}
        return dict(zip(flat[0::2], map(int, flat[1::2]), strict=True))

    async def changes(self, *, resync: Resync,
                      backoff: RetryBackoff = FOLLOW_BACKOFF) -> AsyncGenerator[ZoneChange, None]:
        """Change notifications as they are published, through lost subscriptions
        (:func:`~services.store.follow.follow`): ``resync`` runs once Redis confirms each
        subscription, before the notifications after it; take the snapshot there."""
        async for data in follow(self.client, self.keys.channel, feed="zone", resync=resync,
                                 backoff=backoff):
            yield _zone_change(data)


def _zone_change(data: str) -> ZoneChange:
    """A notification as change_batch.lua publishes it: lines (serial, ms, then key and value
    marked '=' or '-' for deleted), or JSON when a value has a line break."""
    if data.startswith("{"):
        return _zone_change_json(json.loads(data))
    lines = data.split("\n")
    if len(lines) % 2:
        raise ValueError(f"malformed zone notification: {data[:200]!r}")
    values: list[str | None] = []
    for marked in lines[3::2]:
        if marked[:1] == "=":
            values.append(marked[1:])
        elif marked == "-":
            values.append(None)
        else:
            raise ValueError(f"malformed zone notification value: {marked[:200]!r}")
    return ZoneChange(int(lines[0]), int(lines[1]), tuple(lines[2::2]), tuple(values))


def _zone_change_json(data: dict[str, Any]) -> ZoneChange:
    """A notification as JSON (an empty Lua table encodes as {})."""
    keys = data["keys"] if isinstance(data["keys"], list) else []
    values = data["values"] if isinstance(data["values"], list) else []
    if len(values) != len(keys) or not all(isinstance(k, str) for k in keys) or not all(
            isinstance(v, str) or v is False for v in values):
        raise ValueError(f"malformed zone notification: {data!r}")
    return ZoneChange(int(data["serial"]), int(data["ms"]), tuple(keys),
                      tuple(v or None for v in values))


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
    except Rejected as e:
        if e.reason is not RejectReason.CREATE_EXISTS:
            raise
