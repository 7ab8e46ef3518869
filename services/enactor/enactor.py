"""The DNS Enactor: fetch the newest plan, check it once, walk the endpoints, clean up.

The loop only reads, asks :mod:`services.enactor.decisions` what to write, and writes. Every
store call is an ``await`` on the zone or plan store, which is where the interleaving explorer
takes its turns; time and sleeping are injected for the same reason.

The walk goes in windows of ``window`` endpoints: one round-trip reads the window, one sends
its change batches (each still its own atomic batch with its lock and fences), one records its
history. Whatever today's one-at-a-time walk would do differently is done one at a time: an
endpoint whose lock is held or whose flip a stall names ends the window before it and goes
alone, and an endpoint whose batch lost its lock is retried alone after its back-off (the
others lost with it are read again after it). ``window=1`` is the one-at-a-time walk itself
(the explorer's: it takes its turns at each ``await``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from services.config import Settings
from services.core import names
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
    Rejected,
    RejectReason,
    WeightedAddress,
    decode_alias,
)
from services.enactor.decisions import (
    Backoff,
    Commit,
    Decision,
    Policy,
    Refuse,
    Skip,
    TreeRemoval,
    decide_endpoint,
    plan_cleanup,
    window_cut,
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
from services.runtime.service import (
    generation_var,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Addresses = tuple[WeightedAddress, ...]
"""The weighted addresses a plan gives one endpoint."""


class ZoneAccess(Protocol):
    """What an enactor does with the zone: endpoint reads, atomic batches, clean-up.

    ``read_endpoints`` and ``apply_many`` are one round-trip each for a whole window.
    """

    async def read_endpoint(self, endpoint: str, tree: str) -> EndpointRecords: ...
    async def read_endpoints(self, requests: Sequence[tuple[str, str]]
                             ) -> list[EndpointRecords]: ...
    async def apply(self, batch: ChangeBatch) -> Committed: ...
    async def apply_many(self, batches: Sequence[ChangeBatch]
                         ) -> list[Committed | Rejected]: ...
    async def trees(self) -> dict[str, str]: ...
    async def references(self) -> dict[str, int]: ...


class PlanSource(Protocol):
    """Where an enactor finds the newest plan."""

    async def newest(self) -> Plan | None: ...
LOCK_NAMES = names.LOCK_PREFIX


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


@dataclass
class _Sent:
    """A window whose change batches are on their way in one pipeline, and what they are for."""

    window: list[tuple[str, Addresses]]
    decisions: list[Decision]
    outcomes: asyncio.Task[list[Committed | Rejected]]
    """Of the Commit decisions, in order."""

    @classmethod
    def start(cls, window: list[tuple[str, Addresses]], decisions: list[Decision],
              zone: ZoneAccess) -> _Sent:
        batches = [d.batch for d in decisions if isinstance(d, Commit)]
        return cls(window, decisions, asyncio.ensure_future(zone.apply_many(batches)))

    async def lost_a_lock(self) -> bool:
        """Wait until the batches are committed or refused: did any lose its lock?"""
        return any(isinstance(outcome, Rejected) and _is_lock_conflict(outcome)
                   for outcome in await self.outcomes)

    async def abandon(self) -> None:
        """The walk failed or was cancelled: stop waiting, and reap the pipeline's task."""
        self.outcomes.cancel()
        await asyncio.wait([self.outcomes])
        if not self.outcomes.cancelled():
            self.outcomes.exception()  # retrieved; the walk's own error is the one raised


def _is_lock_conflict(error: Rejected) -> bool:
    if error.reason is RejectReason.LOCK_EXPIRED:
        return True
    change = error.change
    return change is not None and change.rrset.name.startswith(LOCK_NAMES) and error.reason in (
        RejectReason.DELETE_MISMATCH, RejectReason.DELETE_MISSING, RejectReason.CREATE_EXISTS)


class Enactor:
    def __init__(self, az: str, policy: Policy, zone: ZoneAccess, plans: PlanSource,
                 gate: FaultGate, sink: HistorySink, *,
                 backoff_base_s: float = 0.05, backoff_max_s: float = 1.0, window: int = 1,
                 clock: Callable[[], float] = time.time, sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 endpoint, not {window}")
        self.az = az
        self.policy = policy
        self.zone = zone
        self.plans = plans
        self.gate = gate
        self.sink = sink
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random(az)
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
        PLANS_APPLIED.labels(self.az).inc()
        await self.gate.checkpoint(StallPoint.DURING_CLEANUP, plan.generation)
        await self._clean_up(plan.generation, report)
        await self.sink.record(RoundCompleted(
            generation=plan.generation, committed=report.committed,
            rejected=sum(report.rejected.values()), deleted=report.deleted))
        return report

    async def _walk(self, plan: Plan, report: RoundReport) -> bool:
        """Apply the plan to every endpoint in order; False when stopped part-way."""
        items = list(plan.endpoints.items())
        if self.window > 1:
            return await self._walk_windows(plan, items, report)
        for endpoint, addresses in items:
            if self.stopping.is_set():
                return False
            await self._apply_endpoint(plan, endpoint, addresses, report)
        return True

    async def _walk_windows(self, plan: Plan, items: list[tuple[str, Addresses]],
                            report: RoundReport) -> bool:
        """The walk in windows: one read per window, its batches in one pipeline.

        While Redis commits one window's batches, the previous window's history is recorded
        and the next window is read and decided; its batches go once the previous ones are
        committed, so commits keep the plan's order. Where one at a time would differ, one at
        a time it is: an endpoint ``window_cut`` names goes alone once everything before it
        is settled, and so does an endpoint whose batch lost its lock (``_settle``; the window
        read meanwhile is read again).
        """
        generation = plan.generation
        done = 0  # endpoints settled or on their way
        sent: _Sent | None = None  # the last window sent: committing, or not yet recorded
        try:
            while done < len(items) and not self.stopping.is_set():
                if self.gate.lock_delayed():
                    await self._settle(plan, sent, report)
                    sent = None
                    await self._apply_endpoint(plan, *items[done], report)  # backs off
                    done += 1
                    continue
                window = items[done:done + self.window]
                views = await self.zone.read_endpoints(
                    [(endpoint, names.tree_name(generation, endpoint)) for endpoint, _ in window])
                now_ms = self._now_ms()
                decisions = [decide_endpoint(generation, e, addresses, view, self.policy, now_ms)
                             for (e, addresses), view in zip(window, views, strict=True)]
                cut = window_cut(decisions, [self.gate.stall_pending(
                    StallPoint.BEFORE_FLIP, generation, endpoint) for endpoint, _ in window])
                if sent is not None and await sent.lost_a_lock():
                    await self._settle(plan, sent, report)  # retried alone, backing off first
                    sent = None
                    continue  # time passed: read this window again
                previous, sent = sent, _Sent.start(window[:cut], decisions[:cut], self.zone)
                await asyncio.sleep(0)  # the batches go on the wire before anything else
                await self._settle(plan, previous, report)
                done += cut
                if cut < len(window):
                    await self._settle(plan, sent, report)
                    sent = None
                    await self._apply_alone(plan, *window[cut], decisions[cut], report)
                    done += 1
            await self._settle(plan, sent, report)
            sent = None
        finally:
            if sent is not None:  # failed or cancelled part-way: do not leave the commit behind
                await sent.abandon()
        return done >= len(items)

    async def _settle(self, plan: Plan, sent: _Sent | None, report: RoundReport) -> bool:
        """Record what a sent window did, in endpoint order; True if a batch lost its lock.

        The first endpoint that lost is retried alone after its back-off, as one at a time.
        The others lost to the same competitor at the same moment, where a one-at-a-time walk
        would have reached them only after that back-off: they are read and decided again
        (a walk of their own), and back off only if their lock is still held then.
        """
        if sent is None:
            return False
        generation = plan.generation
        events: list[Event] = []
        lost: list[tuple[tuple[str, Addresses], Rejected]] = []
        outcomes = iter(await sent.outcomes)
        for (endpoint, addresses), decision in zip(sent.window, sent.decisions, strict=True):
            if isinstance(decision, Refuse):
                events.append(self._refused(endpoint, generation, decision))
            if not isinstance(decision, Commit):
                continue
            outcome = next(outcomes)
            if isinstance(outcome, Committed):
                events.append(self._committed(endpoint, generation, decision, outcome, report))
            elif _is_lock_conflict(outcome):
                lost.append(((endpoint, addresses), outcome))
            else:
                events.append(self._rejected(endpoint, generation, outcome, report))
        await self.sink.record_many(events)
        if not lost:
            return False
        (endpoint, addresses), error = lost[0]
        await self._backoff(0, endpoint, generation, str(error.reason))
        await self._apply_endpoint(plan, endpoint, addresses, report, attempt=1)
        await self._walk_windows(plan, [item for item, _ in lost[1:]], report)
        return True

    async def _apply_alone(self, plan: Plan, endpoint: str, addresses: Addresses,
                           decision: Decision, report: RoundReport) -> None:
        """An endpoint a window cut before: it backs off first if its lock was held."""
        attempt = 0
        if isinstance(decision, Backoff):
            await self._backoff(0, endpoint, plan.generation, "lock_held")
            attempt = 1
        await self._apply_endpoint(plan, endpoint, addresses, report, attempt=attempt)

    def _refused(self, endpoint: str, generation: int, decision: Refuse) -> Event:
        REFUSED.labels(self.az, decision.reason).inc()
        return PlanRefused(endpoint=endpoint, generation=generation,
                                   reason=decision.reason)

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

    async def _backoff(self, attempt: int, endpoint: str, generation: int, reason: str) -> None:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempt, 16))
        delay *= 0.5 + self.rng.random() / 2
        LOCKS.labels(self.az, "lost").inc()
        BACKOFF_SECONDS.labels(self.az).inc(delay)
        await self.sink.record(LockLost(endpoint=endpoint, generation=generation,
                                                reason=reason, backoff_s=round(delay, 4)))
        await self.sleep(delay)

    async def _apply_endpoint(self, plan: Plan, endpoint: str, addresses: Addresses,
                              report: RoundReport, attempt: int = 0) -> None:
        """Apply the plan to one endpoint, backing off and retrying until it is done."""
        generation = plan.generation
        tree = names.tree_name(generation, endpoint)
        while not self.stopping.is_set():
            if self.gate.lock_delayed():
                await self._backoff(attempt, endpoint, generation, "lock_delay")
                attempt += 1
                continue
            view = await self.zone.read_endpoint(endpoint, tree)
            decision = decide_endpoint(generation, endpoint, addresses, view, self.policy,
                                       self._now_ms())
            if isinstance(decision, Skip):
                return
            if isinstance(decision, Refuse):
                await self.sink.record(self._refused(endpoint, generation, decision))
                return
            if isinstance(decision, Backoff):
                await self._backoff(attempt, endpoint, generation, "lock_held")
                attempt += 1
                continue
            assert isinstance(decision, Commit)
            await self.gate.checkpoint(StallPoint.BEFORE_FLIP, generation, endpoint)
            try:
                committed = await self.zone.apply(decision.batch)
            except Rejected as e:
                if _is_lock_conflict(e):
                    await self._backoff(attempt, endpoint, generation, str(e.reason))
                    attempt += 1
                    continue
                await self.sink.record(self._rejected(endpoint, generation, e, report))
                return
            await self.sink.record(self._committed(endpoint, generation, decision, committed,
                                                   report))
            return

    async def _clean_up(self, generation: int, report: RoundReport) -> None:
        trees = await self.zone.trees()
        references = await self.zone.references()
        removals = plan_cleanup(generation, trees, references, self.policy)
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
