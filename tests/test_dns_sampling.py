"""Sampled answers: changes are recorded at once, repeats at most once per interval."""

from __future__ import annotations

from dns_server.sampling import AnswerSampler
from services.core import events, names


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_changes_are_sampled_repeats_are_thinned_cells_ignored() -> None:
    clock = Clock()
    sampler = AnswerSampler(events.MemoryHistory(), interval_s=0.1, clock=clock)
    sampler(names.REGIONAL, 7, 6)
    sampler(names.REGIONAL, 7, 6)            # same answer, too soon: thinned
    sampler(names.REGIONAL, 3, 0)            # changed: recorded at once
    sampler(names.cell_endpoint(0), 7, 6)    # cells are not sampled
    sampler(names.FIPS, None, 0)             # no plan applied yet: not an answer to judge
    clock.now = 0.2
    sampler(names.REGIONAL, 3, 0)            # same, but the interval passed
    queued = [sampler.queue.get_nowait() for _ in range(sampler.queue.qsize())]
    assert [(e.endpoint, e.generation, e.addresses) for e in queued] == [
        (names.REGIONAL, 7, 6), (names.REGIONAL, 3, 0), (names.REGIONAL, 3, 0)]


def test_a_full_queue_drops_instead_of_blocking_the_query_path() -> None:
    clock = Clock()
    sampler = AnswerSampler(events.MemoryHistory(), interval_s=0.0, clock=clock, capacity=2)
    for generation in range(5):
        sampler(names.FIPS, generation, 3)
    assert sampler.queue.qsize() == 2
