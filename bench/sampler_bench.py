"""The answer sampler's cost per query, with it on and off (issue 16: below 0.1 us).

A dnsperf run cannot resolve 0.1 us of CPU per query on a shared machine (its runs differ by
more), so this drives the server's own ``ReplyEngine`` in one process, no sockets: the
cluster's query mix (the regional name as every 4th query, cells otherwise) answered
``--queries`` times, with the sampler off, and on as the ``dns`` process runs it (a read of
the served answers every 0.1 s of queries at the given rate). Rounds alternate off and on;
the figure is the median difference per query, and the read's own cost divided by the
queries between two reads.

    .venv/bin/python -m bench.sampler_bench [--queries 200000] [--rounds 7]

It also runs on the code before issue 16 (copied into a checkout of it), where the sampler
was called on every answer (``on_answer``): that is the "before" figure.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import dns_query, machine
from dns_server.answer import AnswerPolicy
from dns_server.engine import ReplyEngine
from dns_server.sampling import AnswerSampler
from dns_server.zone import Zone
from services.core import events, names
from services.core.records import (
    Alias,
    WeightedAddress,
    ZoneSnapshot,
    a_records,
    alias_record,
)
from services.runtime.clock import WALL_CLOCK
from services.store.zone import zone_apex_batch

RATES = (5_000, 25_000)


def cluster_zone(cells: int = 100, generation: int = 7) -> Zone:
    """The named endpoints and ``cells`` cells, each aliased to a six-address tree."""
    values: dict[str, Any] = {c.rrset.key: c.rrset.value
                              for c in zone_apex_batch(ttl_s=5, negative_ttl_s=5).changes}
    for endpoint in [*names.NAMED_ENDPOINTS, *(names.cell_endpoint(i) for i in range(cells))]:
        tree = a_records(names.tree_name(generation, endpoint),
                         [WeightedAddress(f"127.0.10.{i}", 1) for i in range(1, 7)])
        alias = alias_record(endpoint, Alias(tree.name, generation))
        values[tree.key] = tree.value
        values[alias.key] = alias.value
    return Zone.from_snapshot(ZoneSnapshot(11, values))


def queries(cells: int = 100) -> list[bytes]:
    out: list[bytes] = []
    for i in range(cells):
        if len(out) % 4 == 3:
            out.append(dns_query(names.REGIONAL, qid=len(out)))
        out.append(dns_query(names.cell_endpoint(i), qid=len(out)))
    return out


def _answer(engine: ReplyEngine, mix: list[bytes], count: int,
            sampler: AnswerSampler | None, every: int) -> float:
    """Seconds to answer ``count`` queries; with a read of the sampler every ``every``."""
    respond, n = engine.respond, len(mix)
    started = time.perf_counter()
    if sampler is None:
        for i in range(count):
            respond(mix[i % n], False)
    else:
        sample = sampler.sample
        for i in range(count):
            respond(mix[i % n], False)
            if i % every == 0:
                sample()
    return time.perf_counter() - started


class _PerAnswer:
    """The sampler before issue 16, called on every answer: ``on`` attaches it."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.interval_s = 0.1
        self.hook = AnswerSampler(events.MemoryHistory(WALL_CLOCK), capacity=10**6)  # type: ignore[call-arg]

    def sample(self) -> int:
        setattr(self.engine, "on_answer", self.hook)  # noqa: B010
        while not self.hook.queue.empty():
            self.hook.queue.get_nowait()
        return 0


def measure(count: int, rounds: int, rate: float) -> dict[str, Any]:
    engine = ReplyEngine(AnswerPolicy(ttl_s=5), random.Random(0))
    engine.set_zone(cluster_zone())
    per_answer = not hasattr(engine, "take_served")
    sampler: Any = _PerAnswer(engine) if per_answer else AnswerSampler(
        events.MemoryHistory(WALL_CLOCK), engine.take_served, capacity=10**6)
    mix = queries()
    every = max(1, int(rate * sampler.interval_s))
    _answer(engine, mix, count // 4, sampler, every)  # warm the cache
    off: list[float] = []
    on: list[float] = []
    for _ in range(rounds):
        if per_answer:
            setattr(engine, "on_answer", None)  # noqa: B010 (the attribute of the old code)
        off.append(_answer(engine, mix, count, None, every) / count)
        on.append(_answer(engine, mix, count, sampler, every) / count)
    differences = [b - a for a, b in zip(off, on, strict=True)]
    for _ in range(every):
        engine.respond(mix[3], False)
    reads = []
    for _ in range(50):
        engine.respond(mix[3], False)
        started = time.perf_counter()
        sampler.sample()
        reads.append(time.perf_counter() - started)
    read_s = statistics.median(reads)
    return {
        "design": "called on every answer (before issue 16)" if per_answer
        else "served answers read every 0.1 s",
        "rate_qps": rate, "queries_per_round": count, "rounds": rounds,
        "queries_between_reads": every,
        "per_query_off_us": round(statistics.median(off) * 1e6, 4),
        "per_query_on_us": round(statistics.median(on) * 1e6, 4),
        "sampler_cost_per_query_us": round(statistics.median(differences) * 1e6, 4),
        "sampler_cost_per_query_us_rounds": [round(d * 1e6, 4) for d in differences],
        "read_us": round(read_s * 1e6, 2),
        "read_cost_per_query_us": round(read_s / every * 1e6, 5),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sampler_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"machine": machine(),
                              "runs": [measure(args.queries, args.rounds, r) for r in RATES]}
    for run in result["runs"]:
        sys.stdout.write(
            f"at {run['rate_qps']:g} q/s: {run['per_query_off_us']} us/query off, "
            f"{run['per_query_on_us']} on (difference {run['sampler_cost_per_query_us']} us); "
            f"one read {run['read_us']} us every {run['queries_between_reads']} queries = "
            f"{run['read_cost_per_query_us']} us/query\n")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
