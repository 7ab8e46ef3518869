"""The DNS Enactor: fetch the newest plan, check it once, walk the endpoints, clean up.

The loop only reads, asks :mod:`services.enactor_decisions` what to write, and writes. Every
store call is an ``await`` on the zone or plan store, which is where the interleaving explorer
takes its turns; time and sleeping are injected for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services import history, names
from services.config import Settings
from services.enactor_decisions import (
    Backoff,
    Commit,
    Policy,
    Refuse,
    RefuseReason,
    Skip,
    decide_endpoint,
    plan_cleanup,
)
from services.faults import PIDS_KEY, FaultBook, FaultGate, StallPoint
from services.plans import Plan, PlanStore
from services.records import (
    BatchRejected,
    ChangeBatch,
    Committed,
    RejectReason,
    WeightedAddress,
    decode_alias,
)
from services.runtime import (
    ServiceContext,
    generation_var,
    observability_app,
    redis_client,
    run_until_stopped,
    start_site,
)
from services.zone_store import EndpointRecords, ZoneStore

log = logging.getLogger(__name__)

PLANS_APPLIED = Counter("dnsrace_enactor_plans_applied_total",
                        "Plans walked to the end by this enactor", ["az"])
APPLY_SECONDS = Histogram("dnsrace_enactor_apply_seconds",
                          "Wall time to walk one plan over every endpoint", ["az"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
LOCKS = Counter("dnsrace_enactor_locks_total", "Endpoint lock attempts", ["az", "outcome"])
BACKOFF_SECONDS = Counter("dnsrace_enactor_backoff_seconds_total",
                          "Seconds spent backing off after losing a lock", ["az"])
REJECTED = Counter("dnsrace_enactor_batches_rejected_total",
                   "Change batches the zone refused, by reason", ["az", "reason"])
COMMITTED = Counter("dnsrace_enactor_batches_committed_total",
                    "Change batches committed (endpoint flips and clean-up deletions)",
                    ["az", "kind"])
REFUSED = Counter("dnsrace_enactor_plans_refused_total",
                  "Endpoint applies refused by plan validation", ["az", "reason"])
TREES_DELETED = Counter("dnsrace_enactor_trees_deleted_total",
                        "Trees deleted by clean-up; live=true when an alias still named it",
                        ["az", "live"])
CLEANUP_RACES = Counter("dnsrace_enactor_cleanup_races_total",
                        "Clean-up deletions another enactor had already made", ["az"])
APPLIED_GENERATION = Gauge("dnsrace_enactor_applied_generation",
                           "Generation this enactor last made the endpoint's alias name",
                           ["az", "endpoint"])
ROUND_ERRORS = Counter("dnsrace_enactor_round_errors_total",
                       "Rounds abandoned because Redis could not be reached", ["az"])
CHECKED_GENERATION = Gauge("dnsrace_enactor_checked_generation",
                           "Plan generation that passed this enactor's staleness check", ["az"])


def init_metrics(az: str) -> None:
    """Every counter series of this AZ at zero from the start, so rates exist before events."""
    for metric in (PLANS_APPLIED, APPLY_SECONDS, BACKOFF_SECONDS, CLEANUP_RACES, ROUND_ERRORS):
        metric.labels(az)
    for outcome in ("won", "lost"):
        LOCKS.labels(az, outcome)
    for reason in RejectReason:
        REJECTED.labels(az, reason)
    for kind in ("flip", "cleanup"):
        COMMITTED.labels(az, kind)
    for refusal in RefuseReason:
        REFUSED.labels(az, refusal)
    for live in ("true", "false"):
        TREES_DELETED.labels(az, live)

Sleep = Callable[[float], Awaitable[None]]


class ZoneAccess(Protocol):
    """What an enactor does with the zone: one read per endpoint, atomic batches, clean-up."""

    async def read_endpoint(self, endpoint: str, tree: str) -> EndpointRecords: ...
    async def apply(self, batch: ChangeBatch) -> Committed: ...
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


def _is_lock_conflict(error: BatchRejected) -> bool:
    if error.reason is RejectReason.LOCK_EXPIRED:
        return True
    change = error.change
    return change is not None and change.rrset.name.startswith(LOCK_NAMES) and error.reason in (
        RejectReason.DELETE_MISMATCH, RejectReason.DELETE_MISSING, RejectReason.CREATE_EXISTS)


class Enactor:
    def __init__(self, az: str, policy: Policy, zone: ZoneAccess, plans: PlanSource,
                 gate: FaultGate, sink: history.HistorySink, *,
                 backoff_base_s: float = 0.05, backoff_max_s: float = 1.0,
                 clock: Callable[[], float] = time.time, sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.az = az
        self.policy = policy
        self.zone = zone
        self.plans = plans
        self.gate = gate
        self.sink = sink
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random(az)
        self.stopping = asyncio.Event()

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
        await self.sink.record(history.CheckPassed(generation=plan.generation, applied=applied))
        await self.gate.checkpoint(StallPoint.AFTER_CHECK, plan.generation)
        report = RoundReport(RoundOutcome.APPLIED, plan.generation)
        started = time.monotonic()
        for endpoint, addresses in plan.endpoints.items():
            if self.stopping.is_set():
                report.outcome = RoundOutcome.STOPPED
                return report
            await self._apply_endpoint(plan, endpoint, addresses, report)
        APPLY_SECONDS.labels(self.az).observe(time.monotonic() - started)
        PLANS_APPLIED.labels(self.az).inc()
        await self.gate.checkpoint(StallPoint.DURING_CLEANUP, plan.generation)
        await self._clean_up(plan.generation, report)
        await self.sink.record(history.RoundCompleted(
            generation=plan.generation, committed=report.committed,
            rejected=sum(report.rejected.values()), deleted=report.deleted))
        return report

    async def _backoff(self, attempt: int, endpoint: str, generation: int, reason: str) -> None:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(attempt, 16))
        delay *= 0.5 + self.rng.random() / 2
        LOCKS.labels(self.az, "lost").inc()
        BACKOFF_SECONDS.labels(self.az).inc(delay)
        await self.sink.record(history.LockLost(endpoint=endpoint, generation=generation,
                                                reason=reason, backoff_s=round(delay, 4)))
        await self.sleep(delay)

    async def _apply_endpoint(self, plan: Plan, endpoint: str,
                              addresses: tuple[WeightedAddress, ...], report: RoundReport) -> None:
        generation = plan.generation
        tree = names.tree_name(generation, endpoint)
        attempt = 0
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
                REFUSED.labels(self.az, decision.reason).inc()
                await self.sink.record(history.PlanRefused(
                    endpoint=endpoint, generation=generation, reason=decision.reason))
                return
            if isinstance(decision, Backoff):
                await self._backoff(attempt, endpoint, generation, "lock_held")
                attempt += 1
                continue
            assert isinstance(decision, Commit)
            await self.gate.checkpoint(StallPoint.BEFORE_FLIP, generation, endpoint)
            try:
                committed = await self.zone.apply(decision.batch)
            except BatchRejected as e:
                if _is_lock_conflict(e):
                    await self._backoff(attempt, endpoint, generation, str(e.reason))
                    attempt += 1
                    continue
                REJECTED.labels(self.az, e.reason).inc()
                report.rejected[e.reason] = report.rejected.get(e.reason, 0) + 1
                log.warning("plan %d on %s rejected: %s", generation, endpoint, e)
                await self.sink.record(history.BatchRejected(
                    endpoint=endpoint, generation=generation, reason=e.reason, detail=e.detail))
                return
            LOCKS.labels(self.az, "won").inc()
            COMMITTED.labels(self.az, "flip").inc()
            report.committed += 1
            if endpoint in names.NAMED_ENDPOINTS:
                APPLIED_GENERATION.labels(self.az, names.endpoint_label(endpoint)).set(generation)
            await self.sink.record(history.BatchCommitted(
                endpoint=endpoint, generation=generation, previous=decision.previous,
                rollback=decision.rollback, serial=committed.serial, repaired=decision.repairs))
            return

    async def _clean_up(self, generation: int, report: RoundReport) -> None:
        trees = await self.zone.trees()
        references = await self.zone.references()
        for removal in plan_cleanup(generation, trees, references, self.policy):
            try:
                committed = await self.zone.apply(ChangeBatch((removal.change,)))
            except BatchRejected as e:
                if e.reason is RejectReason.DELETE_MISSING:
                    CLEANUP_RACES.labels(self.az).inc()
                    continue
                REJECTED.labels(self.az, e.reason).inc()
                report.rejected[e.reason] = report.rejected.get(e.reason, 0) + 1
                continue
            live = bool(committed.live_deleted)
            TREES_DELETED.labels(self.az, str(live).lower()).inc()
            COMMITTED.labels(self.az, "cleanup").inc()
            report.deleted += 1
            if live:
                log.error("clean-up deleted %s while an alias still names it", removal.tree)
            await self.sink.record(history.TreeDeleted(
                tree=removal.tree, endpoint=removal.endpoint, generation=removal.generation,
                live=live, serial=committed.serial))


async def register_pid(client: Redis, az: str) -> None:
    """Tell the control service which process to SIGSTOP for an ``enactor_pause``."""
    try:
        await client.hset(PIDS_KEY, az, os.getpid())
    except RedisError as e:
        log.warning("pid not registered: %s", e)


def policy_for(settings: Settings, az: str) -> Policy:
    return Policy(
        holder=az,
        protections=settings.active_protections,
        lock_lease_ms=int(settings.lock_lease_s * 1000),
        cleanup_age=settings.cleanup_age,
        keep_newest=settings.keep_newest,
        max_capacity_drop=settings.max_capacity_drop,
    )


async def _follow_plans(plans: PlanStore, signal: asyncio.Event) -> None:
    """Set ``signal`` whenever the planner publishes (re-subscribing after Redis restarts)."""
    while True:
        pubsub = plans.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(plans.channel)
            signal.set()
            async for _ in pubsub.listen():
                signal.set()
        except RedisError as e:
            log.warning("plan notifications lost (%s); re-subscribing", e)
            await asyncio.sleep(0.2)
        finally:
            await pubsub.aclose()


async def serve(ctx: ServiceContext) -> None:
    """The enactor process of one AZ (``ctx.az``)."""
    settings = ctx.settings
    az = ctx.az or names.AZS[0]
    init_metrics(az)
    client = redis_client(settings)
    sink = history.RedisHistory(client, source=f"enactor/{az}")
    gate = FaultGate(FaultBook(client), az, sink)
    plans = PlanStore(client)
    enactor = Enactor(az, policy_for(settings, az), ZoneStore(client), plans, gate, sink,
                      backoff_base_s=settings.backoff_base_s,
                      backoff_max_s=settings.backoff_max_s)
    runner = await start_site(observability_app(ctx), "127.0.0.1",
                              settings.metrics_port("enactor", names.AZS.index(az)))
    signal = asyncio.Event()
    await register_pid(client, az)

    async def rounds() -> None:
        errors = 0
        while True:
            signal.clear()
            try:
                report = await enactor.run_round()
                ctx.ready = True
                errors = 0
                if report.outcome is RoundOutcome.APPLIED:
                    log.info("plan %d: %d flips, %d deletions, rejected %s", report.generation,
                             report.committed, report.deleted, report.rejected or "none")
            except RedisError as e:
                errors += 1
                ROUND_ERRORS.labels(az).inc()
                log.warning("round failed: %s", e)
                await asyncio.sleep(min(1.0, 0.05 * 2 ** errors))
                continue
            try:
                await asyncio.wait_for(signal.wait(), timeout=settings.plan_interval_s)
            except TimeoutError:
                continue  # no notification: look again anyway, a plan may be waiting

    try:
        await run_until_stopped(ctx, rounds(), gate.follow(), _follow_plans(plans, signal))
    finally:
        enactor.stopping.set()
        await runner.cleanup()
        await client.aclose()
