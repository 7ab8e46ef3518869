"""``dnsrace race``: the October 2025 choreography, driven against a running cluster.

Every step waits on the history (an event some process recorded), never on a sleep:

1. stall enactor A right after its one-time staleness check (it holds plan G);
2. wait until another enactor has flipped the regional endpoint past G + cleanup_age;
3. stall enactor B at the start of its clean-up, and park enactor C after its check;
4. release A: it walks its stale plan G over every endpoint (legacy flips them back), and
   stalls again before its own clean-up (it is still the slow one);
5. release B: its clean-up deletes every tree older than its plan minus cleanup_age;
6. release C and A, and watch what the automation does next.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from services.control.client import ControlClient
from services.core import events, names
from services.core.events import Event
from services.errors import DnsraceError
from services.store.history import RedisHistory

STALL_S = 120.0
E = TypeVar("E", bound=Event)


class RaceError(DnsraceError, RuntimeError):
    pass


class HistoryWatch:
    """Follows the history from a point on and lets a caller wait for an event."""

    def __init__(self, sink: RedisHistory, since_id: str) -> None:
        self.sink = sink
        self.since_id = since_id
        self.events: list[Event] = []
        self._arrived = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HistoryWatch:
        self._task = asyncio.create_task(self._follow())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is None:
            return
        self._stop.set()  # the follower ends after its current XREAD (at most 200 ms)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        async for _, event in self.sink.follow(self.since_id, block_ms=200, stop=self._stop):
            self.events.append(event)
            self._arrived.set()

    async def wait_for(self, kind: type[E], seen: Callable[[E], bool], timeout_s: float,
                       what: str) -> E:
        """The first event of ``kind`` that ``seen`` accepts, or RaceError after the timeout."""

        async def first() -> E:
            checked = 0
            while True:
                for event in self.events[checked:]:
                    if isinstance(event, kind) and seen(event):
                        return event
                checked = len(self.events)
                self._arrived.clear()
                await self._arrived.wait()
        try:
            return await asyncio.wait_for(first(), timeout_s)
        except TimeoutError:
            raise RaceError(f"gave up after {timeout_s:.0f} s waiting for {what}") from None


def _from(az: str) -> str:
    return f"enactor/{az}"


@dataclass
class RaceReport:
    stale_generation: int = 0
    newest_at_release: int = 0
    stale_flips: int = 0
    live_deletions: int = 0
    regional_tree_deleted: bool = False
    rejected_after: dict[str, int] = field(default_factory=dict)
    steps: list[tuple[float, str]] = field(default_factory=list)

    @property
    def emptied(self) -> bool:
        return self.regional_tree_deleted

    def to_text(self) -> str:
        lines = [f"  +{t:6.2f}s  {text}" for t, text in self.steps]
        verdict = ("the regional name now answers NOERROR with no address" if self.emptied
                   else "the regional name kept its addresses")
        lines.append(f"result: {verdict}; stale flips {self.stale_flips}, live trees deleted "
                     f"{self.live_deletions}, rejected afterwards {self.rejected_after or 0}")
        return "\n".join(lines)


async def run_race(control: ControlClient, sink: RedisHistory, cleanup_age: int,
                   plan_interval_s: float, observe_s: float = 3.0,
                   on_step: Callable[[str], None] | None = None,
                   azs: tuple[str, ...] = names.AZS) -> RaceReport:
    slow, fast, other = azs[:3]
    report = RaceReport()
    started = time.monotonic()
    faults: list[str] = []
    plan_wait = (cleanup_age + 8) * plan_interval_s + 10

    def step(text: str) -> None:
        report.steps.append((time.monotonic() - started, text))
        if on_step is not None:
            on_step(text)

    async def stall(az: str, point: str, min_generation: int = 0) -> str:
        params: dict[str, object] = {"point": point}
        if min_generation:
            params["min_generation"] = min_generation
        fault = await control.add("enactor_stall", az, STALL_S, params)
        faults.append(fault["id"])
        return str(fault["id"])

    async with HistoryWatch(sink, await sink.last_id()) as watch:
        try:
            stall_slow = await stall(slow, "after_check")
            checked = await watch.wait_for(
                events.Stalled, lambda e: e.source == _from(slow) and e.point == "after_check",
                plan_wait, f"{slow} to stall after its check")
            g = report.stale_generation = checked.generation
            step(f"{slow} passed its staleness check with plan {g} and stalls")
            target = g + cleanup_age + 1
            ahead = await watch.wait_for(
                events.BatchCommitted, lambda e: e.source != _from(slow)
                and e.endpoint == names.REGIONAL and e.generation >= target,
                plan_wait, f"another enactor to apply plan {target}")
            step(f"{ahead.source} applied plan {ahead.generation} to {names.REGIONAL}")
            # Only a clean-up after a plan far enough ahead of G: a lagging B might otherwise
            # be caught cleaning up after an older round, which would not delete G.
            stall_fast = await stall(fast, "during_cleanup", min_generation=target)
            stall_other = await stall(other, "after_check")
            cleaning = await watch.wait_for(
                events.Stalled, lambda e: e.source == _from(fast)
                and e.point == "during_cleanup", plan_wait, f"{fast} to reach clean-up")
            n = report.newest_at_release = cleaning.generation
            step(f"{fast} applied plan {n} and is about to clean up")
            await watch.wait_for(events.Stalled, lambda e: e.source == _from(other),
                                 plan_wait, f"{other} to park after its check")
            step(f"{other} parked after its check")

            # A is still slow: after its stale walk it stalls again before its own clean-up,
            # so its next round cannot fix what it just broke before B's clean-up runs.
            slow_cleanup = await stall(slow, "during_cleanup")
            await control.remove(stall_slow)
            await watch.wait_for(
                events.Stalled, lambda e: e.source == _from(slow) and e.generation == g
                and e.point == "during_cleanup", 30, f"{slow} to finish walking stale plan {g}")
            report.stale_flips = sum(
                1 for e in watch.events if isinstance(e, events.BatchCommitted)
                and e.source == _from(slow) and e.generation == g)
            step(f"{slow} released: walked stale plan {g}, flipped {report.stale_flips} "
                 f"endpoint(s) back to it")

            await control.remove(stall_fast)
            await watch.wait_for(
                events.RoundCompleted, lambda e: e.source == _from(fast) and e.generation == n,
                30, f"{fast} to finish its clean-up")
            deleted = [e for e in watch.events if isinstance(e, events.TreeDeleted)
                       and e.source == _from(fast) and e.live]
            report.live_deletions = len(deleted)
            report.regional_tree_deleted = any(
                e.tree == names.tree_name(g, names.REGIONAL) for e in deleted)
            step(f"{fast} released: clean-up deleted {report.live_deletions} live tree(s)"
                 + (f", including {names.tree_name(g, names.REGIONAL)}"
                    if report.regional_tree_deleted else ""))

            await control.remove(stall_other)
            await control.remove(slow_cleanup)
            step(f"{other} and {slow} released; watching the automation for {observe_s:.0f} s")
            mark = len(watch.events)
            await asyncio.sleep(observe_s)  # an observation window, not a wait for a condition
            for e in watch.events[mark:]:
                if isinstance(e, events.BatchRejected) and e.endpoint == names.REGIONAL:
                    report.rejected_after[e.reason] = report.rejected_after.get(e.reason, 0) + 1
        finally:
            for fault_id in faults:
                with contextlib.suppress(Exception):
                    await control.remove(fault_id)
    return report
