"""``dnsrace explore``: the real planner and enactors under a seeded scheduler, checked each step.

The interleaving explorer runs the production :class:`~services.enactor.enactor.Enactor` and
:class:`~services.store.plans.PlanStore` on a real Redis, one store round-trip at a time, in the
order a scheduler chooses, and judges I1-I3 on the zone after every step that changed it.
``legacy`` must yield a counterexample (printed as the incident's story, with the choices
that replay it); ``safe`` must not, over every schedule explored.

Module map: :mod:`services.explorer.scheduler` (gates and logical time),
:mod:`services.explorer.world` (gated stores, actors, one schedule),
:mod:`services.explorer.search` (random, exhaustive, replay), :mod:`services.explorer.trace`
(the story), :mod:`services.core.invariants` (I1-I3), :mod:`services.explorer.report`
(what is printed). This module is the command line, Redis for a run and worker processes.

Run ``python -m services.explorer.command --help`` (``dnsrace explore`` once wired).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aioredis
import uvloop

from services.config import DNS_PROTECTIONS, Protection
from services.core.invariants import ALL_INVARIANTS, Invariant
from services.core.verdicts import verdict_map
from services.explorer.report import (
    counterexample_json,
    explored_json,
    load_replay,
    print_explored,
    print_matrix,
    print_replay,
)
from services.explorer.scheduler import ReplayDiverged
from services.explorer.search import (
    Explored,
    Strategy,
    explore,
    matrix_configs,
    merge,
    protection_matrix,
    replay,
)
from services.explorer.world import ACTORS, CLUSTER_WINDOW, ExploreConfig, Lab
from services.runtime.redis_server import EmbeddedRedis

DESCRIPTION = ("the real planner and enactors under a seeded scheduler on a real Redis, "
               "checked for I1-I3 after every step")
REDIS_URL_ENV = "DNSRACE_REDIS_URL"
QUIET_LOGGERS = ("services.enactor.enactor",)
"""The enactor logs every rejected batch; in a search of thousands of schedules that is noise."""


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _protections(text: str) -> tuple[Protection, ...]:
    chosen = _comma_list(text)
    unknown = [p for p in chosen if p not in DNS_PROTECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown protection {', '.join(unknown)}; choose from {', '.join(DNS_PROTECTIONS)}")
    return tuple(p for p in DNS_PROTECTIONS if p in chosen)


def _invariants(text: str) -> tuple[Invariant, ...]:
    try:
        chosen = {Invariant(i.upper()) for i in _comma_list(text)}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invariants are a comma list of {', '.join(ALL_INVARIANTS)}") from None
    return tuple(i for i in ALL_INVARIANTS if i in chosen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``dnsrace explore``."""
    parser.add_argument("--mode", choices=("legacy", "safe"), default="legacy",
                        help="enactor algorithm (default legacy)")
    parser.add_argument("--protections", type=_protections, default=(),
                        help="safe mode: comma list of protections on (default all): "
                             + ", ".join(DNS_PROTECTIONS))
    parser.add_argument("--strategy", type=Strategy, choices=tuple(Strategy),
                        default=Strategy.RANDOM,
                        help="seeded random schedules, or every schedule within the "
                             "preemption bound (default random)")
    parser.add_argument("--schedules", type=int, default=1000,
                        help="schedules to run (exhaustive: at most this many; default 1000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random: schedule i uses seed S+i (default 0)")
    parser.add_argument("--preemptions", type=int, default=2,
                        help="exhaustive: preemption bound (default 2)")
    parser.add_argument("--plans", type=int, default=4, help="plans the planner publishes (4)")
    parser.add_argument("--endpoints", type=int, default=2,
                        help="endpoints in each plan, regional first, then FIPS, ... (2)")
    parser.add_argument("--cleanup-age", type=int, default=2,
                        help="clean-up deletes trees this many generations older (2)")
    parser.add_argument("--invariants", type=_invariants, default=ALL_INVARIANTS,
                        help="a schedule stops at its first violation of these (I1,I2,I3)")
    parser.add_argument("--window", type=int,
                        help="endpoints an enactor reads, then commits, per window (default "
                             f"{CLUSTER_WINDOW}, the cluster's; 1: one at a time); with "
                             "--replay FILE, replaces the file's")
    parser.add_argument("--step-ms", type=int, default=100,
                        help="logical time of one step in ms (default 100; lease 1 s)")
    parser.add_argument("--max-steps", type=int, default=200,
                        help="steps one actor may take in a schedule (default 200)")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="stop once N schedules violated an invariant")
    parser.add_argument("--replay", metavar="FILE|CHOICES",
                        help="play one schedule: a file written by --save, or a string of "
                             "actor digits (0 planner, 1-3 use1-az1, use1-az2, use1-az4)")
    parser.add_argument("--save", metavar="FILE", type=Path,
                        help="write the shortest counterexample found (or the schedule "
                             "replayed), replayable by --replay")
    parser.add_argument("--matrix", action="store_true",
                        help="no protection, each protection alone, and all: which of the "
                             "--invariants each holds, one invariant at a time")
    parser.add_argument("--workers", type=int, default=1,
                        help="share the search (with --matrix: its cells) among this many "
                             "processes (default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def config_from(args: argparse.Namespace) -> ExploreConfig:
    if args.protections and args.mode != "safe":
        raise ValueError("--protections needs --mode safe (legacy has none)")
    return ExploreConfig(
        mode=args.mode, protections=tuple(args.protections) if args.mode == "safe" else (),
        plans=args.plans, endpoints=args.endpoints, cleanup_age=args.cleanup_age,
        invariants=tuple(args.invariants), step_ms=args.step_ms, max_steps=args.max_steps,
        window=CLUSTER_WINDOW if args.window is None else args.window)


# -- Redis for a run -----------------------------------------------------------------------

@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """``DNSRACE_REDIS_URL`` if set, else an embedded, non-persistent server for this run."""
    url = os.environ.get(REDIS_URL_ENV, "")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="dnsrace-explore-") as tmp, \
            EmbeddedRedis(Path(tmp), appendonly=False) as server:
        yield server.url


def fast_client(url: str) -> aioredis.Redis:
    """One connection used by one actor at a time: no pool, no per-read timeout, RESP2.

    Each of these roughly halves redis-py's cost per round-trip, which is the explorer's cost.
    """
    return aioredis.Redis.from_url(url, decode_responses=True, single_connection_client=True,
                                   socket_timeout=None, protocol=2)


AnyLab = TypeVar("AnyLab", bound=Lab)


def open_lab(url: str, config: ExploreConfig) -> contextlib.AbstractAsyncContextManager[Lab]:
    """A lab on its own key prefix, its keys deleted afterwards (a shared Redis stays clean)."""
    return lab_of(Lab, url, config, "explore")


@contextlib.asynccontextmanager
async def lab_of(kind: type[AnyLab], url: str, config: ExploreConfig,
                 prefix: str) -> AsyncIterator[AnyLab]:
    """A lab of ``kind`` on its own key prefix ``prefix-...``, its keys deleted afterwards."""
    client = fast_client(url)
    lab = kind(client, f"{prefix}-{uuid.uuid4().hex[:10]}", config)
    try:
        yield lab
    finally:
        await lab.reset()
        await client.aclose()


@contextlib.contextmanager
def quiet_enactor_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# -- worker processes ----------------------------------------------------------------------

def _work(url: str, config: ExploreConfig, strategy: Strategy, schedules: int, seed: int,
          preemptions: int, stop_after: int | None, roots: tuple[int, ...] | None
          ) -> Explored:
    """One worker process's share: its own event loop, client and key prefix."""
    async def share() -> Explored:
        async with open_lab(url, config) as lab:
            return await explore(lab, strategy, schedules=schedules, seed=seed,
                                 preemptions=preemptions, stop_after=stop_after, roots=roots)

    with quiet_enactor_logs():
        return uvloop.run(share())


def explore_in_processes(url: str, config: ExploreConfig, strategy: Strategy, *,
                         schedules: int, seed: int, preemptions: int,
                         stop_after: int | None, workers: int) -> Explored:
    """One search shared by ``workers`` processes (the explorer is CPU-bound in Python).

    random: contiguous seed ranges, so the tally is the one a single process would make.
    exhaustive: the first step's actors are dealt out, each worker searching its subtrees
    (at most one worker per actor; ``schedules`` is shared out as a cap).
    """
    shares: list[tuple[int, int, tuple[int, ...] | None]]
    if strategy is Strategy.RANDOM:
        sizes = [schedules // workers + (w < schedules % workers) for w in range(workers)]
        starts = [seed + sum(sizes[:w]) for w in range(workers)]
        shares = [(size, start, None) for size, start in zip(sizes, starts, strict=True)
                  if size]
    else:
        workers = min(workers, len(ACTORS))
        cap = -(-schedules // workers)
        shares = [(cap, seed, tuple(range(w, len(ACTORS), workers))) for w in range(workers)]
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(shares), mp_context=context) as pool:
        futures = [pool.submit(_work, url, config, strategy, size, start, preemptions,
                               stop_after, roots) for size, start, roots in shares]
        parts = [future.result() for future in futures]
    return merge(parts, time.perf_counter() - started)


# -- entry points --------------------------------------------------------------------------

def matrix_in_processes(url: str, base: ExploreConfig, strategy: Strategy, *, schedules: int,
                        seed: int, preemptions: int, workers: int) -> list[Explored]:
    """The protection matrix's cells dealt out to ``workers`` processes, in the matrix's order:
    each cell is searched whole by one process, as :func:`protection_matrix` searches it."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(_work, url, config, strategy, schedules, seed, preemptions, 1,
                               None) for config in matrix_configs(base)]
        return [future.result() for future in futures]


def _matrix(url: str, args: argparse.Namespace, config: ExploreConfig) -> int:
    if args.workers > 1:
        cells = matrix_in_processes(url, config, args.strategy, schedules=args.schedules,
                                    seed=args.seed, preemptions=args.preemptions,
                                    workers=args.workers)
    else:
        cells = uvloop.run(protection_matrix(
            lambda c: open_lab(url, c), config, args.strategy, schedules=args.schedules,
            seed=args.seed, preemptions=args.preemptions))
    if args.json:
        print(json.dumps(verdict_map((c.config.mode, c.config.active_protections,
                                      c.config.invariants[0], c.shortest is not None)
                                     for c in cells), indent=2))
    else:
        print_matrix(cells)
    all_on = [c for c in cells if len(c.config.active_protections) == len(DNS_PROTECTIONS)]
    return 1 if any(c.violating for c in all_on) else 0


async def _replay(url: str, args: argparse.Namespace, config: ExploreConfig) -> int:
    async with open_lab(url, config) as lab:
        record = await replay(lab, load_replay(args.replay, config)[1])
    if args.save:
        args.save.write_text(json.dumps(counterexample_json(config, record), indent=2) + "\n")
    if args.json:
        print(json.dumps(counterexample_json(config, record), indent=2))
    else:
        print_replay(config, record)
    return 1 if record.violations else 0


async def _explore(url: str, args: argparse.Namespace, config: ExploreConfig) -> Explored:
    def progress(result: Explored) -> None:
        if not args.json:
            print(f"  ... {result.schedules} schedules, {result.violating} violating, "
                  f"{result.schedules_per_s:.0f}/s", file=sys.stderr, flush=True)

    async with open_lab(url, config) as lab:
        return await explore(lab, args.strategy, schedules=args.schedules, seed=args.seed,
                             preemptions=args.preemptions, stop_after=args.stop_after,
                             progress=progress)


def _search(url: str, args: argparse.Namespace, config: ExploreConfig) -> int:
    if args.workers > 1:
        result = explore_in_processes(url, config, args.strategy, schedules=args.schedules,
                                      seed=args.seed, preemptions=args.preemptions,
                                      stop_after=args.stop_after, workers=args.workers)
    else:
        result = uvloop.run(_explore(url, args, config))
    if args.save and result.shortest is not None:
        args.save.write_text(json.dumps(counterexample_json(
            config, result.shortest.record, result.shortest.seed), indent=2) + "\n")
    if args.json:
        print(json.dumps(explored_json(result), indent=2))
    else:
        print_explored(result)
    return 1 if result.violating else 0


def run(args: argparse.Namespace) -> int:
    """``dnsrace explore``: 1 when a violation was found, 0 when none, 2 on a usage error.

    With ``--matrix``: 1 when the row with every protection on broke an invariant.
    """
    try:
        config = config_from(args)
        if args.replay:
            config = load_replay(args.replay, config)[0]
            if args.window is not None:
                config = dataclasses.replace(config, window=args.window)
        if args.workers < 1 or args.schedules < 0:
            raise ValueError("--workers must be >= 1 and --schedules >= 0")
    except (ValueError, OSError) as e:
        print(f"dnsrace explore: {e}", file=sys.stderr)
        return 2
    try:
        with redis_url() as url, quiet_enactor_logs():
            if args.matrix:
                return _matrix(url, args, config)
            if args.replay:
                return uvloop.run(_replay(url, args, config))
            return _search(url, args, config)
    except ReplayDiverged as e:
        print(f"dnsrace explore: the replay does not fit this configuration: {e}",
              file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dnsrace explore", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
