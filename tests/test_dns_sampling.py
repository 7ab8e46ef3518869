"""Sampled answers: changes are recorded at once, repeats at most once per interval, each at
the time it was answered."""

from __future__ import annotations

from dns_server.sampling import AnswerSampler
from services.core import events, names
from tests.conftest import ManualClock


def test_changes_are_sampled_repeats_are_thinned_cells_ignored() -> None:
    clock = ManualClock(1_000)
    sampler = AnswerSampler(events.MemoryHistory(clock), interval_s=0.1, clock=clock)
    sampler(names.REGIONAL, 7, 6)
    sampler(names.REGIONAL, 7, 6)            # same answer, too soon: thinned
    sampler(names.REGIONAL, 3, 0)            # changed: recorded at once
    sampler(names.cell_endpoint(0), 7, 6)    # cells are not sampled
    sampler(names.FIPS, None, 0)             # no plan applied yet: not an answer to judge
    clock.now = 1_200
    sampler(names.REGIONAL, 3, 0)            # same, but the interval passed
    queued = [sampler.queue.get_nowait() for _ in range(sampler.queue.qsize())]
    assert [(e.endpoint, e.generation, e.addresses, e.at_ms) for e in queued] == [
        (names.REGIONAL, 7, 6, 1_000), (names.REGIONAL, 3, 0, 1_000),
        (names.REGIONAL, 3, 0, 1_200)]


async def test_a_sample_keeps_the_time_it_was_answered_when_written_later() -> None:
    clock = ManualClock(1_000)
    sink = events.MemoryHistory(clock)
    sampler = AnswerSampler(sink, interval_s=0.1, clock=clock)
    sampler(names.REGIONAL, 7, 0)
    clock.now = 5_000                        # the history writer fell behind
    await sink.record(sampler.queue.get_nowait())
    assert [e.at_ms for e in sink.events] == [1_000]


def test_a_full_queue_drops_instead_of_blocking_the_query_path() -> None:
    clock = ManualClock(1_000)
    sampler = AnswerSampler(events.MemoryHistory(clock), interval_s=0.0, clock=clock, capacity=2)
    for generation in range(5):
        sampler(names.FIPS, generation, 3)
    assert sampler.queue.qsize() == 2
