"""Sampled answers, read by time: the query path only counts, a timer reads what was answered.

Changes are recorded with the time they were first answered, repeats at most once per
interval; a name's samples keep the order clients saw them; cells are not sampled.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from dns_server.answer import AnswerPolicy
from dns_server.engine import ReplyEngine
from dns_server.sampling import AnswerSampler
from services.core import events, names
from services.core.records import Alias, WeightedAddress, a_records, alias_record
from tests.conftest import ManualClock
from tests.test_dns_engine import ALIAS3, TREE3, query, zone_of

TREE4 = a_records(names.tree_name(4, names.REGIONAL), [WeightedAddress("127.0.10.8", 1),
                                                       WeightedAddress("127.0.10.9", 1)])
ALIAS4 = alias_record(names.REGIONAL, Alias(TREE4.name, 4))
CELL = names.cell_endpoint(0)
CELL_TREE = a_records(names.tree_name(3, CELL), [WeightedAddress("127.0.11.1", 1)])
CELL_ALIAS = alias_record(CELL, Alias(CELL_TREE.name, 3))


def setup(capacity: int = 1000) -> tuple[ReplyEngine, AnswerSampler, ManualClock]:
    clock = ManualClock(1_000)
    engine = ReplyEngine(AnswerPolicy(ttl_s=5), random.Random(0), clock=clock)
    engine.set_zone(zone_of(TREE3, ALIAS3, CELL_TREE, CELL_ALIAS, serial=11))
    sampler = AnswerSampler(events.MemoryHistory(clock), engine.take_served, interval_s=0.1,
                            clock=clock, capacity=capacity)
    return engine, sampler, clock


def queued(sampler: AnswerSampler) -> list[tuple[str, int, int, int]]:
    out = [sampler.queue.get_nowait() for _ in range(sampler.queue.qsize())]
    return [(e.endpoint, e.generation, e.addresses, e.at_ms) for e in out]


def test_served_generations_are_read_by_time_stamped_when_first_answered() -> None:
    engine, sampler, clock = setup()
    assert sampler.sample() == 0                      # nothing answered yet: nothing recorded
    engine.respond(query(names.REGIONAL), False)      # first answered at 1_000
    clock.now = 1_030
    engine.respond(query(names.REGIONAL.upper()), False)
    engine.respond(query(CELL), False)                # cells are not sampled
    clock.now = 1_050
    sampler.sample()
    assert queued(sampler) == [(names.REGIONAL, 3, 1, 1_000)]
    clock.now = 1_060
    engine.respond(query(names.REGIONAL), False)      # same answer, within the interval
    clock.now = 1_080
    sampler.sample()
    assert queued(sampler) == []
    engine.respond(query(names.REGIONAL), False)
    clock.now = 1_180
    sampler.sample()                                  # same answer, the interval passed
    assert queued(sampler) == [(names.REGIONAL, 3, 1, 1_180)]
    clock.now = 1_400
    sampler.sample()                                  # not asked since: nothing recorded
    assert queued(sampler) == []


def test_a_change_between_two_reads_keeps_the_order_clients_saw() -> None:
    engine, sampler, clock = setup()
    engine.respond(query(names.REGIONAL), False)
    clock.now = 1_100
    sampler.sample()
    assert queued(sampler) == [(names.REGIONAL, 3, 1, 1_000)]
    clock.now = 1_250
    engine.respond(query(names.REGIONAL), False)      # a repeat of plan 3...
    engine.set_zone(zone_of(TREE4, ALIAS4, serial=12))
    clock.now = 1_260
    engine.respond(query(names.REGIONAL), False)      # ...then plan 4, first given at 1_260
    engine.set_zone(zone_of(ALIAS4, serial=13))       # its tree deleted: an empty answer
    clock.now = 1_270
    engine.respond(query(names.REGIONAL), False)
    clock.now = 1_300
    sampler.sample()
    assert queued(sampler) == [(names.REGIONAL, 3, 1, 1_260), (names.REGIONAL, 4, 2, 1_260),
                               (names.REGIONAL, 4, 0, 1_270)]


def test_no_plan_applied_yet_is_not_an_answer_to_judge() -> None:
    clock = ManualClock(1_000)
    engine = ReplyEngine(AnswerPolicy(ttl_s=5), random.Random(0), clock=clock)
    engine.set_zone(zone_of(serial=11))
    sampler = AnswerSampler(events.MemoryHistory(clock), engine.take_served, clock=clock)
    engine.respond(query(names.FIPS), False)
    assert sampler.sample() == 0


async def test_a_sample_keeps_the_time_it_was_answered_when_written_later() -> None:
    engine, sampler, clock = setup()
    engine.respond(query(names.REGIONAL), False)
    clock.now = 5_000                                 # read late, and the writer behind
    sampler.sample()
    await sampler.sink.record(sampler.queue.get_nowait())
    assert isinstance(sampler.sink, events.MemoryHistory)
    assert [e.at_ms for e in sampler.sink.events] == [1_000]


class CountingHistory(events.MemoryHistory):
    """A memory history that keeps the size of every write it was asked for."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.writes: list[int] = []

    async def record(self, event: events.Event) -> None:
        self.writes.append(1)
        await super().record(event)

    async def record_many(self, events: Sequence[events.Event]) -> None:
        self.writes.append(len(events))
        await super().record_many(events)


async def test_the_samples_of_a_read_are_written_in_one_round_trip_in_order() -> None:
    engine, sampler, clock = setup()
    sink = CountingHistory(clock)
    sampler.sink = sink
    for serial, zone in enumerate([zone_of(TREE4, ALIAS4), zone_of(ALIAS4),
                                   zone_of(TREE3, ALIAS3)], start=20):
        zone.serial = serial
        engine.set_zone(zone)
        clock.now += 1
        engine.respond(query(names.REGIONAL), False)  # three answers that changed
    clock.now += 100
    assert sampler.sample() == 3
    writer = asyncio.create_task(sampler.drain())
    try:
        await sink.wait_for(lambda e: isinstance(e, events.DnsAnswer) and e.generation == 3,
                            timeout_s=5)
    finally:
        writer.cancel()
    assert sink.writes == [3]
    assert [(e.generation, e.addresses) for e in sink.events] == [(4, 2), (4, 0), (3, 1)]


def test_a_full_queue_drops_instead_of_growing() -> None:
    engine, sampler, clock = setup(capacity=2)
    for serial, zone in enumerate([zone_of(TREE4, ALIAS4), zone_of(ALIAS4),
                                   zone_of(TREE3, ALIAS3)], start=20):
        zone.serial = serial
        engine.set_zone(zone)
        clock.now += 1
        engine.respond(query(names.REGIONAL), False)
    clock.now += 100
    assert sampler.sample() == 2 and sampler.queue.qsize() == 2  # of 3 changed answers


def test_dropped_replies_are_forgotten_once_read() -> None:
    engine, _, _ = setup()
    for serial in range(20, 60):
        engine.set_zone(zone_of(TREE3, ALIAS3, serial=serial))
        engine.respond(query(names.REGIONAL), False)
    assert len(engine.take_served()) == 40            # each reply built, read once
    assert engine.take_served() == []                 # and only the live one kept
    engine.respond(query(names.REGIONAL), False)
    assert [a.count for a in engine.take_served()] == [1]
