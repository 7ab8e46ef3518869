"""How schedules are chosen: seeded random, bounded exhaustive (stateless DFS), and replay.

Every schedule re-executes from an empty zone. A schedule is named by its choice sequence
(one actor index per step: 0 the planner, 1-3 the enactors of use1-az1, use1-az2, use1-az4),
which :class:`ReplayChooser` plays back exactly.

The exhaustive search is a stateless depth-first search over choice sequences with a
preemption bound (as in CHESS): switching away from an actor that could still run costs one
preemption; a switch forced because the running actor finished, went idle or sleeps is free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum

from services.config import DNS_PROTECTIONS, Mode, Protection
from services.core.invariants import Violation
from services.explorer.scheduler import Chooser
from services.explorer.world import ExploreConfig, Lab, ScheduleRecord


class Strategy(StrEnum):
    RANDOM = "random"
    """Schedule ``i`` chooses uniformly among the actors that can run, seeded ``seed + i``."""
    EXHAUSTIVE = "exhaustive"
    """Every schedule within a preemption bound, depth first."""


def encode(choices: Sequence[int]) -> str:
    """A choice sequence as a string of actor digits (``0`` planner, ``1``-``3`` enactors)."""
    return "".join(str(c) for c in choices)


def decode(text: str) -> tuple[int, ...]:
    cleaned = "".join(ch for ch in text if not ch.isspace() and ch != ",")
    if not cleaned.isdigit():
        raise ValueError(f"a choice sequence is a string of actor digits 0-3, not {text!r}")
    return tuple(int(ch) for ch in cleaned)


def _default(enabled: Sequence[int], current: int | None) -> int:
    """Keep running the current actor if it can; else the lowest-numbered one that can."""
    return current if current is not None and current in enabled else enabled[0]


class RandomChooser:
    """Uniform among the actors that can run: schedule ``i`` of seed ``s`` uses ``s + i``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choose(self, step: int, enabled: Sequence[int], current: int | None) -> int:
        return enabled[0] if len(enabled) == 1 else self.rng.choice(enabled)


class ReplayChooser:
    """Plays a recorded choice sequence; past its end, runs without preemption."""

    def __init__(self, choices: Sequence[int]) -> None:
        self.choices = tuple(choices)

    def choose(self, step: int, enabled: Sequence[int], current: int | None) -> int:
        return self.choices[step] if step < len(self.choices) else _default(enabled, current)


@dataclass
class _Node:
    """One step of the DFS: who could run, who ran before, who runs, at what preemption cost."""

    enabled: tuple[int, ...]
    previous: int | None
    chosen: int
    preemptions: int
    """Preemptions spent before this step."""
    tried: set[int] = field(default_factory=set)

    def cost(self, choice: int) -> int:
        return int(self.previous is not None and self.previous in self.enabled
                   and choice != self.previous)


class _DfsChooser:
    def __init__(self, prefix: Sequence[int]) -> None:
        self.prefix = tuple(prefix)
        self.nodes: list[_Node] = []

    def choose(self, step: int, enabled: Sequence[int], current: int | None) -> int:
        spent = 0
        if self.nodes:
            last = self.nodes[-1]
            spent = last.preemptions + last.cost(last.chosen)
        choice = self.prefix[step] if step < len(self.prefix) else _default(enabled, current)
        self.nodes.append(_Node(tuple(enabled), current, choice, spent, {choice}))
        return choice


@dataclass
class Found:
    """A schedule that broke an invariant, and how to play it again."""

    record: ScheduleRecord
    seed: int | None
    """The random seed of this very schedule (``--seed S --schedules 1``), if random."""

    @property
    def choices(self) -> str:
        return encode(self.record.choices)

    @property
    def violations(self) -> list[Violation]:
        return self.record.violations


@dataclass
class Explored:
    config: ExploreConfig
    strategy: Strategy
    schedules: int = 0
    violating: int = 0
    by_invariant: Counter[str] = field(default_factory=Counter)
    bounded: int = 0
    """Schedules in which some actor hit the step bound."""
    steps: int = 0
    exhausted: bool = False
    """The exhaustive search enumerated every schedule within its preemption bound."""
    elapsed_s: float = 0.0
    shortest: Found | None = None

    @property
    def schedules_per_s(self) -> float:
        return self.schedules / self.elapsed_s if self.elapsed_s else 0.0

    def add(self, record: ScheduleRecord, seed: int | None) -> None:
        self.schedules += 1
        self.steps += record.steps
        self.bounded += record.bounded
        if not record.violations:
            return
        self.violating += 1
        self.by_invariant.update({str(v.invariant) for v in record.violations})
        if self.shortest is None or record.steps < self.shortest.record.steps:
            self.shortest = Found(record, seed)


Progress = Callable[[Explored], None]


def merge(parts: Sequence[Explored], elapsed_s: float) -> Explored:
    """The tally of several workers' shares of one search, as if one process had run it."""
    merged = Explored(parts[0].config, parts[0].strategy, exhausted=True, elapsed_s=elapsed_s)
    for part in parts:
        merged.schedules += part.schedules
        merged.violating += part.violating
        merged.by_invariant.update(part.by_invariant)
        merged.bounded += part.bounded
        merged.steps += part.steps
        merged.exhausted &= part.exhausted
        found = part.shortest
        if found is not None and (merged.shortest is None or _rank(found) <
                                  _rank(merged.shortest)):
            merged.shortest = found
    return merged


def _rank(found: Found) -> tuple[int, int]:
    return found.record.steps, found.seed if found.seed is not None else 0


Play = Callable[[Chooser], Awaitable[ScheduleRecord]]
"""Runs one schedule from scratch with a chooser (``Lab.run``)."""


async def random_schedules(play: Play, seed: int, count: int
                           ) -> AsyncGenerator[tuple[ScheduleRecord, int | None], None]:
    for i in range(count):
        yield await play(RandomChooser(seed + i)), seed + i


async def exhaustive_schedules(play: Play, preemptions: int, limit: int, done: list[bool],
                               roots: Sequence[int] | None = None
                               ) -> AsyncGenerator[tuple[ScheduleRecord, int | None], None]:
    """Every schedule with at most ``preemptions`` preemptions (up to ``limit`` of them).

    ``done`` receives True when the enumeration finished before the limit. ``roots``: only
    the schedules whose first step is one of these actors (a share of the search for one
    worker process).
    """
    stack: list[_Node] = []
    prefix: list[int] = [roots[0]] if roots else []
    for _ in range(limit):
        chooser = _DfsChooser(prefix)
        record = await play(chooser)
        yield record, None
        if not stack and roots and chooser.nodes:
            chooser.nodes[0].tried |= set(chooser.nodes[0].enabled) - set(roots)
        stack.extend(chooser.nodes[len(stack):])
        while stack:
            node = stack[-1]
            options = [c for c in node.enabled if c not in node.tried
                       and node.preemptions + node.cost(c) <= preemptions]
            if options:
                node.chosen = options[0]
                node.tried.add(node.chosen)
                break
            stack.pop()
        if not stack:
            done.append(True)
            return
        prefix = [n.chosen for n in stack]


async def explore(lab: Lab, strategy: Strategy | str, *, schedules: int, seed: int = 0,
                  preemptions: int = 2, stop_after: int | None = None,
                  roots: Sequence[int] | None = None,
                  progress: Progress | None = None) -> Explored:
    """Run ``schedules`` schedules (exhaustive: at most that many) and tally what broke.

    ``stop_after``: stop once that many schedules violated an invariant. ``roots``
    (exhaustive): explore only schedules that start with one of these actors.
    """
    result = Explored(lab.config, Strategy(strategy))
    started = time.perf_counter()
    done: list[bool] = []
    if result.strategy is Strategy.RANDOM:
        source = random_schedules(lab.run, seed, schedules)
    else:
        source = exhaustive_schedules(lab.run, preemptions, schedules, done, roots)
    async with contextlib.aclosing(source):
        async for record, schedule_seed in source:
            result.add(record, schedule_seed)
            if stop_after is not None and result.violating >= stop_after:
                break
            if progress is not None and result.schedules % 1000 == 0:
                result.elapsed_s = time.perf_counter() - started
                progress(result)
    result.exhausted = bool(done)
    result.elapsed_s = time.perf_counter() - started
    return result


async def replay(lab: Lab, choices: Sequence[int]) -> ScheduleRecord:
    return await lab.run(ReplayChooser(choices))


MATRIX_ROWS: tuple[tuple[Mode, tuple[Protection, ...]], ...] = (
    ("legacy", ()),
    *(("safe", (p,)) for p in DNS_PROTECTIONS),
    ("safe", DNS_PROTECTIONS),
)
"""No protection, each protection alone, all of them."""

LabFactory = Callable[[ExploreConfig], AbstractAsyncContextManager[Lab]]


def matrix_configs(base: ExploreConfig) -> list[ExploreConfig]:
    """The cells of the protection matrix: each row of MATRIX_ROWS against each of
    ``base.invariants`` alone.

    One invariant at a time, because a schedule stops at its first violation: checking I2
    alongside I1 would hide every empty answer behind the stale flip that precedes it.
    """
    return [dataclasses.replace(base, mode=mode, protections=protections,
                                invariants=(invariant,))
            for mode, protections in MATRIX_ROWS for invariant in base.invariants]


async def protection_matrix(open_lab: LabFactory, base: ExploreConfig,
                            strategy: Strategy | str, *,
                            schedules: int, seed: int = 0, preemptions: int = 2
                            ) -> list[Explored]:
    """Every cell of :func:`matrix_configs`, in order; each stops at its first
    counterexample."""
    cells = []
    for config in matrix_configs(base):
        async with open_lab(config) as lab:
            cells.append(await explore(lab, strategy, schedules=schedules, seed=seed,
                                       preemptions=preemptions, stop_after=1))
    return cells
