"""Clients see stale answers (I2): the server names the generation behind each answer."""

from __future__ import annotations

import random

from dns_server.server import DnsServer
from loadgen.outcome import Outcome
from loadgen.resolver import StubResolver
from services.config import load
from services.core import names
from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    RecordSet,
    WeightedAddress,
    a_records,
    alias_record,
)
from services.runtime.redis_server import EmbeddedRedis
from services.store.zone import ZoneStore, ensure_apex


def tree(generation: int) -> RecordSet:
    return a_records(names.tree_name(generation, names.REGIONAL),
                     [WeightedAddress(f"127.0.10.{generation}", 10)])


async def test_an_older_generation_after_a_newer_one_counts_as_stale(
        redis_server: EmbeddedRedis, zone: ZoneStore) -> None:
    await ensure_apex(zone, 5, 5)
    await zone.apply(ChangeBatch(tuple(Change(Action.CREATE, tree(g)) for g in (3, 5))))
    server = DnsServer(load({}), keys=zone.keys, redis_url=redis_server.url, port=0,
                       rng=random.Random(1))
    await server.start()
    resolver = StubResolver("127.0.0.1", server.port, cache=False)
    try:
        seen = []
        for generation in (3, 5, 3, 5):
            alias = alias_record(names.REGIONAL, Alias(tree(generation).name, generation))
            done = await zone.apply(ChangeBatch((Change(Action.UPSERT, alias),)))
            await server.wait_for_serial(done.serial, timeout_s=5)
            answer = await resolver.query(names.REGIONAL)
            assert answer.outcome is Outcome.OK
            seen.append((answer.generation, resolver.stale_answers))
        assert seen == [(3, 0), (5, 0), (3, 1), (5, 1)]
        # An empty answer still names the generation whose tree is gone.
        gone = await zone.apply(ChangeBatch((Change(Action.DELETE, tree(5)),)))
        await server.wait_for_serial(gone.serial, timeout_s=5)
        empty = await resolver.query(names.REGIONAL)
        assert (empty.outcome, empty.generation) == (Outcome.DNS_NODATA, 5)
    finally:
        await resolver.aclose()
        await server.stop()
