"""The zones the benchmarks serve: built in a real Redis, exported for the other servers.

``populate`` applies plans with the real Enactor (what the cluster does); ``bulk_load`` writes
a large zone in big change batches through the same Lua script (faster, same record sets).
``export`` reads what our DNS server answers for every endpoint, so that NSD, Knot and the
dnslib server serve exactly the same addresses from a zone file or JSON.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from services import config
from services.config import Settings
from services.core import names
from services.core.balancers import fleet
from services.core.plans import make_plan
from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    Lock,
    WeightedAddress,
    a_records,
    alias_record,
    lock_record,
)
from services.enactor.decisions import Commit, Policy, decide_endpoint
from services.enactor.enactor import Enactor, RoundReport, policy_for
from services.enactor.gate import FaultGate
from services.runtime.clock import WALL_CLOCK
from services.runtime.redis_server import EmbeddedRedis
from services.store import history
from services.store.faults import FaultBook
from services.store.plans import PlanStore
from services.store.zone import ZoneStore, ensure_apex

AZ = names.AZS[0]


@dataclass
class Store:
    """One real Redis with the zone and plan stores on it."""

    redis: EmbeddedRedis
    client: aioredis.Redis
    settings: Settings

    @property
    def url(self) -> str:
        return self.redis.url

    def zone(self) -> ZoneStore:
        return ZoneStore(self.client, clock=WALL_CLOCK)

    def enactor(self, az: str = AZ, window: int | None = None) -> Enactor:
        """An enactor as ``services.enactor.service.serve`` builds it: Redis history, fault gate
        (and ``window`` endpoints per round-trip instead of the setting, if given)."""
        sink = history.RedisHistory(self.client, source=f"enactor/{az}", clock=WALL_CLOCK)
        gate = FaultGate(FaultBook(self.client), az, sink)
        return Enactor(az, policy_for(self.settings, az), self.zone(), PlanStore(self.client),
                       gate, sink, backoff_base_s=self.settings.backoff_base_s,
                       backoff_max_s=self.settings.backoff_max_s,
                       window=window or self.settings.enactor_window)

    async def publish_plan(self, generation: int) -> None:
        endpoints = names.endpoints(self.settings.cells)
        plan = make_plan(generation, int(time.time() * 1000), endpoints, fleet(self.settings),
                         {})
        await PlanStore(self.client).publish(plan)

    async def window_batches(self, generation: int,
                             window: Sequence[tuple[str, tuple[WeightedAddress, ...]]],
                             policy: Policy, now_ms: int) -> list[ChangeBatch]:
        """The change batches an enactor with ``policy`` decides at ``now_ms`` for ``window``
        (endpoints of plan ``generation`` and their addresses), read from the zone as it is:
        one window of a round, without sending it. Endpoints it would skip are left out."""
        views = await self.zone().read_endpoints(
            [(e, names.tree_name(generation, e)) for e, _ in window])
        return [d.batch for (e, a), v in zip(window, views, strict=True)
                if isinstance(d := decide_endpoint(generation, e, a, v, policy, now_ms), Commit)]

    async def apply_plan(self, generation: int, enactor: Enactor | None = None) -> RoundReport:
        await self.publish_plan(generation)
        return await (enactor or self.enactor()).run_round()


@asynccontextmanager
async def store(root: Path, endpoints: int, appendonly: bool = False) -> AsyncIterator[Store]:
    """A fresh Redis (``appendonly`` as the cluster runs it, fsync always) with the apex."""
    root.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="redis-", dir=root))
    redis = EmbeddedRedis(data, appendonly=appendonly).start()
    # 300-s socket timeout, not the client's default 5 s: on a loaded machine a 100,000-endpoint
    # zone's one-command reads (the references, a snapshot) can wait longer for a CPU.
    client = aioredis.Redis.from_url(redis.url, decode_responses=True, socket_timeout=300)
    try:
        settings = config.load({}, redis_url=redis.url, cells=max(0, endpoints - 3),
                               state_dir=str(root / "state"))
        await ensure_apex(ZoneStore(client, clock=WALL_CLOCK), settings.ttl_s,
                          settings.negative_ttl_s)
        yield Store(redis, client, settings)
    finally:
        await client.aclose()
        redis.stop()


async def populate(s: Store, plans: int = 2) -> None:
    """Apply ``plans`` generations with the real enactor (the second sets every rollback)."""
    enactor = s.enactor()
    for generation in range(1, plans + 1):
        await s.apply_plan(generation, enactor)


async def bulk_load(s: Store, generation: int = 2, chunk: int = 2000) -> int:
    """Every endpoint's alias, tree, previous tree, rollback and lock, in big change batches.

    The same record sets an enactor leaves after applying ``generation`` over
    ``generation - 1``; written through ``ZoneStore.apply``. Returns the record sets written.
    """
    endpoints = names.endpoints(s.settings.cells)
    lbs = fleet(s.settings)
    now_ms = int(time.time() * 1000)
    current = make_plan(generation, now_ms, endpoints, lbs, {})
    previous = make_plan(generation - 1, now_ms, endpoints, lbs, {})
    written = 0
    for start in range(0, len(endpoints), chunk):
        changes: list[Change] = []
        for endpoint in endpoints[start:start + chunk]:
            tree = names.tree_name(generation, endpoint)
            old = names.tree_name(generation - 1, endpoint)
            changes += [
                Change(Action.CREATE, a_records(old, previous.endpoints[endpoint])),
                Change(Action.CREATE, a_records(tree, current.endpoints[endpoint])),
                Change(Action.CREATE, alias_record(endpoint, Alias(tree, generation))),
                Change(Action.CREATE, alias_record(names.rollback_name(endpoint),
                                                   Alias(old, generation - 1))),
                Change(Action.CREATE, lock_record(names.lock_name(endpoint),
                                                  Lock(AZ, now_ms))),
            ]
        await s.zone().apply(ChangeBatch(tuple(changes), comment="bench bulk load"))
        written += len(changes)
    return written


REGIONAL_EVERY = 4
"""One query in this many asks for the regional name (the cluster's clients ask for it)."""


def _query_lines(answers: dict[str, list[str]]) -> list[str]:
    """Every name once, with the regional name as every :data:`REGIONAL_EVERY`-th query (as
    the cluster's load asks for it, the named endpoints are not a rare answer here)."""
    lines: list[str] = []
    for name in answers:
        if names.REGIONAL in answers and len(lines) % REGIONAL_EVERY == REGIONAL_EVERY - 1:
            lines.append(f"{names.REGIONAL} A\n")
        lines.append(f"{name} A\n")
    return lines


@dataclass(frozen=True)
class ExportedZone:
    """The endpoints' answers as files the other servers read."""

    names: tuple[str, ...]
    zone_file: Path
    answers_json: Path
    query_file: Path
    records: int


async def export(s: Store, out: Path) -> ExportedZone:
    """Zone file (RFC 1035), JSON and dnsperf query file with every endpoint's A records."""
    snapshot = await s.zone().snapshot()
    answers: dict[str, list[str]] = {}
    for endpoint in names.endpoints(s.settings.cells):
        alias = snapshot.alias(endpoint)
        addresses = snapshot.addresses(alias.target) if alias is not None else None
        if addresses:
            answers[endpoint] = [a.ip for a in addresses]
    ttl = s.settings.ttl_s
    lines = [
        f"$ORIGIN {names.ZONE}.",
        f"@ {ttl} IN SOA ns1 hostmaster {snapshot.serial % 2**32} 60 10 3600 "
        f"{s.settings.negative_ttl_s}",
        f"@ {ttl} IN NS ns1",
        f"ns1 {ttl} IN A 127.0.0.1",
    ]
    records = 0
    for name, ips in answers.items():
        for ip in ips:
            lines.append(f"{name}. {ttl} IN A {ip}")
            records += 1
    out.mkdir(parents=True, exist_ok=True)
    zone_file = out / f"{names.ZONE}.zone"
    zone_file.write_text("\n".join(lines) + "\n")
    answers_json = out / "answers.json"
    answers_json.write_text(json.dumps({"ttl": ttl, "answers": answers}))
    query_file = out / "queries.txt"
    query_file.write_text("".join(_query_lines(answers)))
    return ExportedZone(tuple(answers), zone_file, answers_json, query_file, records)
