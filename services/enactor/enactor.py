"""The DNS Enactor: fetch the newest plan, check it once, walk the endpoints, clean up.

The loop only reads, asks what to write, and writes: :mod:`services.enactor.decisions` decides
each endpoint's change batch and clean-up, and :class:`services.enactor.walk.Walk` decides the
walk itself (windows, what goes alone, back-offs, retries); :class:`Enactor` carries out the
actions it is given. Every store call is an ``await`` on the zone or plan store, which is where
the interleaving explorer takes its turns; time and sleeping are injected for the same reason.

With ``overlap`` (the cluster's), the next window is read while the last one's batches commit:
the walk is told their outcomes only when it asks. The batches are held until that read is on
the wire and sent right behind it, so Redis answers the read first and runs the batches while
the enactor decides the window it read. The history of the windows before goes right behind
them, built while the read is answered, and is waited for only before the next history, a
back-off, a stall or the end of the walk: neither the enactor nor Redis waits for the other
there. The explorer turns the overlap off, so that one round-trip ends before the next starts
(its scheduler takes one turn per round-trip): the walk then settles each window before
reading the next. A window of 1 never overlaps: it is the
one-at-a-time walk, round-trip for round-trip.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from services.config import Settings
from services.core import names
from services.core.backoff import RetryBackoff
from services.core.events import (
    BatchCommitted,
    BatchRejected,
    CheckPassed,
    Event,
    HistorySink,
    LockLost,
    PlanRefused,
    RoundCompleted,
    TreeDeleted,
)
from services.core.faults import StallPoint
from services.core.plans import Plan
from services.core.records import (
    ChangeBatch,
    Committed,
    EndpointRecords,
    OldTrees,
    Rejected,
    RejectReason,
    decode_alias,
)
from services.enactor.decisions import (
    Commit,
    Policy,
    Refuse,
    TreeRemoval,
    plan_cleanup,
)
from services.enactor.gate import FaultGate
from services.enactor.metrics import (
    APPLIED_GENERATION,
    APPLY_SECONDS,
    BACKOFF_SECONDS,
    CHECKED_GENERATION,
    CLEANUP_RACES,
    COMMITTED,
    LOCKS,
    PLANS_APPLIED,
    REFUSED,
    REJECTED,
    TREES_DELETED,
)
from services.enactor.walk import (
    AwaitSent,
    Done,
    ReadWindow,
    Record,
    Reply,
    RetryAlone,
    RetryReason,
    SendWindow,
    Settled,
    Stall,
    Walk,
)
from services.runtime.service import generation_var

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class ZoneAccess(Protocol):
    """What an enactor does with the zone: endpoint reads, atomic batches, clean-up.

    ``read_endpoints`` and ``apply_many`` are one round-trip each for a whole window.
    """

    async def read_endpoint(self, endpoint: str, tree: str) -> EndpointRecords: ...
    async def read_endpoints(self, requests: Sequence[tuple[str, str]]
                             ) -> list[EndpointRecords]: ...
    async def apply_many(self, batches: Sequence[ChangeBatch]
                         ) -> list[Committed | Rejected]: ...
    async def old_trees(self, below: int, newest: int) -> OldTrees: ...
    async def references(self, of: Collection[str] | None = None) -> dict[str, int]: ...


class PlanSource(Protocol):
    """Where an enactor finds the newest plan."""

    async def newest(self) -> Plan | None: ...


class RoundOutcome(StrEnum):
    NO_PLAN = "no_plan"
    UP_TO_DATE = "up_to_date"
    APPLIED = "applied"
    STOPPED = "stopped"


@dataclass
class RoundReport:
    outcome: RoundOutcome
    generation: int = 0
    committed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    deleted: int = 0


class Enactor:
    def __init__(self, az: str, policy: Policy, zone: ZoneAccess, plans: PlanSource,
                 gate: FaultGate, sink: HistorySink, *,
                 backoff_base_s: float = 0.05, backoff_max_s: float = 1.0, window: int = 1,
                 overlap: bool = True, clock: Callable[[], float] = time.time,
                 sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 endpoint, not {window}")
        self.az = az
        self.policy = policy
        self.zone = zone
        self.plans = plans
        self.gate = gate
        self.sink = sink
        self.window = window
        self.overlap = overlap and window > 1
        """Read the next window while the last one commits (see the module's docstring)."""
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random(az)
        self.lock_retry = RetryBackoff(base_s=backoff_base_s, cap_s=backoff_max_s, jitter=0.5,
                                       rng=self.rng)
        """Back-off after a lost lock: doubling from the base to the cap, equal jitter."""
        self.stopping = asyncio.Event()
        # Counted for every endpoint: the labelled series are looked up once.
        self._locks_won = LOCKS.labels(az, "won")
        self._flips = COMMITTED.labels(az, "flip")

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def run_round(self) -> RoundReport:
        """One round: newest plan, one-time staleness check, walk, clean-up."""
        plan = await self.plans.newest()
        if plan is None:
            return RoundReport(RoundOutcome.NO_PLAN)
        generation_var.set(plan.generation)
        regional = await self.zone.read_endpoint(
            names.REGIONAL, names.tree_name(plan.generation, names.REGIONAL))
        applied = decode_alias(regional.alias).generation if regional.alias else 0
        if plan.generation <= applied:
            return RoundReport(RoundOutcome.UP_TO_DATE, plan.generation)
        # The one-time staleness check. Nothing below looks at the newest plan again.
        CHECKED_GENERATION.labels(self.az).set(plan.generation)
        await self.sink.record(CheckPassed(generation=plan.generation, applied=applied))
        await self.gate.checkpoint(StallPoint.AFTER_CHECK, plan.generation)
        report = RoundReport(RoundOutcome.APPLIED, plan.generation)
        started = time.monotonic()
        if not await self._walk(plan, report):
            report.outcome = RoundOutcome.STOPPED
            return report
        APPLY_SECONDS.labels(self.az).observe(time.monotonic() - started)
        if report.committed:  # a round whose every batch was rejected applied nothing
            PLANS_APPLIED.labels(self.az).inc()
        await self.gate.checkpoint(StallPoint.DURING_CLEANUP, plan.generation)
        await self._clean_up(plan.generation, report)
        await self.sink.record(RoundCompleted(
            generation=plan.generation, committed=report.committed,
            rejected=sum(report.rejected.values()), deleted=report.deleted))
        return report

    async def _walk(self, plan: Plan, report: RoundReport) -> bool:
        """Carry out the walk's actions until it is done (True) or stopped part-way (False)."""
        generation = plan.generation
        walk = Walk(generation, tuple(plan.endpoints.items()), self.policy, self.window)
        on_its_way: asyncio.Future[list[Committed | Rejected]] | None = None
        held: Sequence[ChangeBatch] = ()
        """A window's batches not sent yet: they go right behind the next window's read, or
        before any action but that read and the history of the windows before them."""
        to_record: list[Settled] = []
        """Settled endpoints whose history is not sent yet (with overlap): it is built and sent
        while the next window's read is answered, or before any action that is not a read, a
        send or a wait for the batches."""
        recording: asyncio.Future[None] | None = None
        """The history on its way (one window's at a time, so it is written in order)."""
        reading: asyncio.Future[list[EndpointRecords]] | None = None

        async def send_held() -> None:
            nonlocal on_its_way, held
            if held:
                on_its_way = asyncio.ensure_future(self.zone.apply_many(held))
                held = ()
                await asyncio.sleep(0)  # the batches go on the wire before anything else

        async def record(wait: bool) -> None:
            nonlocal recording
            if recording is not None and (to_record or wait):
                await recording
                recording = None
            if to_record:
                events = [self._settled(generation, s, report) for s in to_record]
                to_record.clear()
                recording = asyncio.ensure_future(self.sink.record_many(events))
                if wait:
                    await recording
                    recording = None
                else:
                    await asyncio.sleep(0)  # on the wire before the caller goes on

        reply = self._reply()
        try:
            while True:
                action = walk.next(reply)
                if not isinstance(action, ReadWindow | Record):
                    await send_held()
                if not isinstance(action, ReadWindow | Record | SendWindow | AwaitSent):
                    await record(wait=True)  # before a back-off, a stall or the end
                match action:
                    case ReadWindow() as read:
                        # The read goes first, the held batches right behind it: Redis answers
                        # the read before it runs them, so this window is decided while they
                        # commit (behind them, the read would wait for every one). The history
                        # of the windows before goes behind them, built while the read is
                        # answered.
                        reading = asyncio.ensure_future(self.zone.read_endpoints(read.requests))
                        await asyncio.sleep(0)  # the read goes on the wire first
                        await send_held()
                        await record(wait=False)
                        views = await reading
                        reading = None
                        stalled = tuple(self.gate.stall_pending(StallPoint.BEFORE_FLIP,
                                                                generation, endpoint)
                                        for endpoint in read.endpoints)
                        reply = self._reply(views=tuple(views), stalled=stalled,
                                            now_ms=self._now_ms())
                    case SendWindow(batches) if self.overlap:
                        held = batches
                        reply = self._reply()
                    case SendWindow(batches):
                        reply = self._reply(outcomes=tuple(await self.zone.apply_many(batches)))
                    case AwaitSent():
                        assert on_its_way is not None, "AwaitSent follows a SendWindow"
                        outcomes = await on_its_way
                        on_its_way = None
                        reply = self._reply(outcomes=tuple(outcomes))
                    case Record(settled):
                        to_record.extend(settled)
                        if not self.overlap:  # one round-trip ends before the next starts
                            await record(wait=True)
                        reply = self._reply()
                    case RetryAlone(endpoint, attempt, reason):
                        await self._backoff(attempt, endpoint, generation, reason)
                        reply = self._reply()
                    case Stall(endpoint):
                        await self.gate.checkpoint(StallPoint.BEFORE_FLIP, generation, endpoint)
                        reply = self._reply()
                    case end:
                        return isinstance(end, Done)
        finally:
            # Failed or cancelled part-way: reap the tasks still on their way; the walk's own
            # error is the one raised.
            for task in (on_its_way, recording, reading):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.wait([task])
                if task is not None and not task.cancelled():
                    task.exception()  # retrieved

    def _reply(self, *, views: tuple[EndpointRecords, ...] = (), stalled: tuple[bool, ...] = (),
               now_ms: int = 0, outcomes: tuple[Committed | Rejected, ...] | None = None
               ) -> Reply:
        """The reply to the walk's last action: what came back, and the world now."""
        return Reply(self.stopping.is_set(), self.gate.lock_delayed(), views, stalled, now_ms,
                     outcomes)

    def _settled(self, generation: int, settled: Settled, report: RoundReport) -> Event:
        """Count one settled endpoint; the event to record."""
        decision, outcome = settled.decision, settled.outcome
        if isinstance(decision, Refuse):
            return self._refused(settled.endpoint, generation, decision)
        if isinstance(outcome, Committed):
            return self._committed(settled.endpoint, generation, decision, outcome, report)
        assert outcome is not None, "a sent batch has an outcome"
        return self._rejected(settled.endpoint, generation, outcome, report)

    def _refused(self, endpoint: str, generation: int, decision: Refuse) -> Event:
        REFUSED.labels(self.az, decision.reason).inc()
        return PlanRefused(endpoint=endpoint, generation=generation, reason=decision.reason)

    def _committed(self, endpoint: str, generation: int, decision: Commit, committed: Committed,
                   report: RoundReport) -> Event:
        self._locks_won.inc()
        self._flips.inc()
        report.committed += 1
        if endpoint in names.NAMED_ENDPOINTS:
            APPLIED_GENERATION.labels(self.az, names.endpoint_label(endpoint)).set(generation)
        return BatchCommitted(
            endpoint=endpoint, generation=generation, previous=decision.previous,
            rollback=decision.rollback, serial=committed.serial, repaired=decision.repairs)

    def _rejected(self, endpoint: str, generation: int, error: Rejected,
                  report: RoundReport) -> Event:
        REJECTED.labels(self.az, error.reason).inc()
        report.rejected[error.reason] = report.rejected.get(error.reason, 0) + 1
        log.warning("plan %d on %s rejected: %s", generation, endpoint, error)
        return BatchRejected(endpoint=endpoint, generation=generation,
                             reason=error.reason, detail=error.detail)

    async def _backoff(self, attempt: int, endpoint: str, generation: int,
                       reason: RetryReason) -> None:
        delay = self.lock_retry.delay(attempt + 1)
        LOCKS.labels(self.az, "lost").inc()
        BACKOFF_SECONDS.labels(self.az).inc(delay)
        await self.sink.record(LockLost(endpoint=endpoint, generation=generation,
                                        reason=reason, backoff_s=round(delay, 4)))
        await self.sleep(delay)

    async def _clean_up(self, generation: int, report: RoundReport) -> None:
        old = await self.zone.old_trees(below=generation - self.policy.cleanup_age,
                                        newest=self.policy.keep_newest)
        references = await self.zone.references(old.trees)
        removals = plan_cleanup(generation, old.trees, references, self.policy, old.newest)
        for start in range(0, len(removals), self.window):
            chunk = removals[start:start + self.window]
            outcomes = await self.zone.apply_many([ChangeBatch((r.change,)) for r in chunk])
            events = [self._removed(removal, outcome, report)
                      for removal, outcome in zip(chunk, outcomes, strict=True)]
            await self.sink.record_many([e for e in events if e is not None])

    def _removed(self, removal: TreeRemoval, outcome: Committed | Rejected,
                 report: RoundReport) -> Event | None:
        """Count one clean-up deletion; the event to record if it was committed."""
        if isinstance(outcome, Rejected):
            if outcome.reason is RejectReason.DELETE_MISSING:
                CLEANUP_RACES.labels(self.az).inc()
            else:
                REJECTED.labels(self.az, outcome.reason).inc()
                report.rejected[outcome.reason] = report.rejected.get(outcome.reason, 0) + 1
            return None
        live = bool(outcome.live_deleted)
        TREES_DELETED.labels(self.az, str(live).lower()).inc()
        COMMITTED.labels(self.az, "cleanup").inc()
        report.deleted += 1
        if live:
            log.error("clean-up deleted %s while an alias still names it", removal.tree)
        return TreeDeleted(tree=removal.tree, endpoint=removal.endpoint,
                                   generation=removal.generation, live=live,
                                   serial=outcome.serial)


def policy_for(settings: Settings, az: str) -> Policy:
    return Policy(
        holder=az,
        protections=settings.active_protections,
        lock_lease_ms=int(settings.lock_lease_s * 1000),
        cleanup_age=settings.cleanup_age,
        keep_newest=settings.keep_newest,
        max_capacity_drop=settings.max_capacity_drop,
    )
