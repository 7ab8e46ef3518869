"""What an operator runs by hand: ``status`` (what is true right now) and ``repair``.

``repair`` is the manual fix of October 2025: for every endpoint whose alias names a missing
tree (or that lags behind the newest plan) it applies the newest plan with the same decision
code the enactors use, with self-repair on, so that a dangling rollback is dropped instead of
blocking the batch. It works while the automation is stuck, and says what it changed.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from loadgen.resolver import StubResolver
from services.core import names
from services.core.backoff import RetryBackoff
from services.core.records import EndpointRecords, Rejected, decode_alias, decode_lock
from services.enactor.decisions import Commit, Policy, Refuse, Skip, decide_endpoint
from services.store.plans import PlanStore
from services.store.zone import ZoneStore

OPERATOR = "operator"


@dataclass(frozen=True)
class EndpointStatus:
    endpoint: str
    newest: int
    alias_target: str | None
    alias_generation: int | None
    tree_exists: bool
    rollback_target: str | None
    rollback_generation: int | None
    rollback_exists: bool
    lock_holder: str | None
    lock_expires_in_s: float | None
    dns_outcome: str
    dns_addresses: tuple[str, ...]

    @property
    def broken(self) -> bool:
        return self.alias_target is None or not self.tree_exists

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "broken": self.broken}


def _status(endpoint: str, newest: int, view: EndpointRecords, now_ms: int, dns_outcome: str,
            dns_addresses: tuple[str, ...]) -> EndpointStatus:
    alias = decode_alias(view.alias) if view.alias else None
    rollback = decode_alias(view.rollback) if view.rollback else None
    lock = decode_lock(view.lock) if view.lock else None
    return EndpointStatus(
        endpoint=endpoint,
        newest=newest,
        alias_target=alias.target if alias else None,
        alias_generation=alias.generation if alias else None,
        tree_exists=view.alias_target is not None,
        rollback_target=rollback.target if rollback else None,
        rollback_generation=rollback.generation if rollback else None,
        rollback_exists=view.rollback_target is not None,
        lock_holder=lock.holder if lock else None,
        lock_expires_in_s=round((lock.expires_ms - now_ms) / 1000, 3) if lock else None,
        dns_outcome=dns_outcome,
        dns_addresses=dns_addresses,
    )


async def collect_status(zone: ZoneStore, plans: PlanStore, endpoints: tuple[str, ...],
                         dns_host: str, dns_port: int) -> list[EndpointStatus]:
    resolver = StubResolver(dns_host, dns_port, timeout_s=1.0, cache=False)
    newest = await plans.newest_generation()
    views = [await zone.read_endpoint(e, names.tree_name(newest, e)) for e in endpoints]
    answers = await asyncio.gather(*(resolver.query(e) for e in endpoints))
    now_ms = zone.clock.now_ms()
    return [_status(e, newest, v, now_ms, str(a.outcome), a.addresses)
            for e, v, a in zip(endpoints, views, answers, strict=True)]


def format_status(rows: list[EndpointStatus]) -> str:
    header = (f"{'endpoint':<44} {'newest':>6} {'alias':>6} {'tree':<7} {'rollback':>8} "
              f"{'lock':<10} dns")
    lines = [header]
    for r in rows:
        tree = "ok" if r.tree_exists else ("MISSING" if r.alias_target else "-")
        rollback = "-" if r.rollback_generation is None else (
            f"{r.rollback_generation}" + ("" if r.rollback_exists else "!"))
        lock = r.lock_holder or "-"
        if r.lock_expires_in_s is not None and r.lock_expires_in_s <= 0:
            lock += "(exp)"
        dns = (f"{len(r.dns_addresses)} addr {r.dns_addresses[0]}" if r.dns_addresses
               else r.dns_outcome.upper())
        alias = "-" if r.alias_generation is None else str(r.alias_generation)
        lines.append(f"{r.endpoint:<44} {r.newest:>6} {alias:>6} {tree:<7} {rollback:>8} "
                     f"{lock:<10} {dns}")
    broken = sum(r.broken for r in rows)
    lines.append(f"{len(rows)} endpoints, {broken} broken (alias names a missing tree)"
                 + ("; '!' marks a rollback naming a missing tree" if any(
                     r.rollback_target and not r.rollback_exists for r in rows) else ""))
    return "\n".join(lines)


@dataclass(frozen=True)
class RepairAction:
    endpoint: str
    before: int
    after: int
    tree_was_missing: bool
    outcome: str


REPAIR_RETRY = RetryBackoff(base_s=0.05, cap_s=0.4)
"""Waits between the operator's attempts on one endpoint (a held lock, a rejected batch)."""


async def repair(zone: ZoneStore, plans: PlanStore, endpoints: tuple[str, ...],
                 attempts: int = 20, retry: RetryBackoff = REPAIR_RETRY) -> list[RepairAction]:
    """Put every broken endpoint (alias or rollback naming a missing tree) on the newest plan.

    Decisions read the zone store's clock (time passed in, as the enactors' do)."""
    plan = await plans.newest()
    if plan is None:
        return []
    policy = Policy(OPERATOR, frozenset({"self_repair", "fenced_commit"}), lock_lease_ms=2000)
    actions = []
    for endpoint in endpoints:
        addresses = plan.endpoints.get(endpoint, ())
        tree = names.tree_name(plan.generation, endpoint)
        outcome = "lock held by an enactor"
        for attempt in range(1, attempts + 1):
            view = await zone.read_endpoint(endpoint, tree)
            before = decode_alias(view.alias).generation if view.alias else 0
            missing = view.alias is not None and view.alias_target is None
            dangling_rollback = view.rollback is not None and view.rollback_target is None
            if not missing and not dangling_rollback and view.alias is not None:
                break  # healthy: the enactors keep it moving, the operator leaves it alone
            decision = decide_endpoint(plan.generation, endpoint, addresses, view, policy,
                                       zone.clock.now_ms())
            if isinstance(decision, Skip | Refuse):
                break
            if not isinstance(decision, Commit):  # another holder's lock: wait for its lease
                await asyncio.sleep(retry.delay(attempt))
                continue
            try:
                await zone.apply(decision.batch)
            except Rejected as e:
                outcome = f"retry ({e.reason})"
                await asyncio.sleep(retry.delay(attempt))
                continue
            outcome = "repaired"
            actions.append(RepairAction(endpoint, before, plan.generation, missing, outcome))
            break
        else:
            actions.append(RepairAction(endpoint, 0, 0, True, f"gave up: {outcome}"))
    return actions
