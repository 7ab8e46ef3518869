"""What an enactor writes: pure functions of (plan, what it read of the zone, now).

No sockets and no clocks here. The enactor loop reads, calls these, and writes; the tests and
the interleaving explorer call the very same functions.

``legacy`` is the 2025 algorithm: skip an endpoint only when its alias already names this
plan's tree, take the lock by deleting and re-creating it, build the tree, flip the alias
(UPSERT, no check), point the rollback at whatever the alias named before, and clean up every
tree ``cleanup_age`` generations older than the plan just applied.

Each protection of ``safe`` mode changes one of those choices and can be switched alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.config import Protection
from services.core import names
from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    EndpointRecords,
    GenerationFence,
    Lock,
    RecordSet,
    RecordType,
    WeightedAddress,
    a_records,
    alias_record,
    decode_addresses,
    decode_alias,
    decode_lock,
    lock_record,
)


@dataclass(frozen=True)
class Policy:
    holder: str
    protections: frozenset[Protection] = frozenset()
    lock_lease_ms: int = 1000
    cleanup_age: int = 5
    keep_newest: int = 3
    max_capacity_drop: float = 0.5

    def has(self, protection: Protection) -> bool:
        return protection in self.protections


class SkipReason(StrEnum):
    ALREADY_APPLIED = "already_applied"
    NEWER_APPLIED = "newer_applied"


class RefuseReason(StrEnum):
    NO_HEALTHY_ADDRESS = "no_healthy_address"
    CAPACITY_DROP = "capacity_drop"


@dataclass(frozen=True)
class Skip:
    reason: SkipReason


@dataclass(frozen=True)
class Backoff:
    """Another enactor holds this endpoint's lock: wait and try again."""

    holder: str


@dataclass(frozen=True)
class Refuse:
    """Plan validation will not apply this plan to this endpoint."""

    reason: RefuseReason
    detail: str


@dataclass(frozen=True)
class Commit:
    batch: ChangeBatch
    previous: int
    """Generation the alias named before this batch (0 if none)."""
    rollback: int
    """Generation the rollback names after this batch (0 if none)."""
    repairs: bool
    """True when the batch repairs a dangling alias or rollback (self-repair)."""


Decision = Skip | Backoff | Refuse | Commit


def _lock_changes(view: EndpointRecords, endpoint: str, policy: Policy,
                  now_ms: int) -> tuple[Change, ...]:
    """Take the lock the 2025 way: delete the value we saw and create ours, in the batch."""
    mine = lock_record(names.lock_name(endpoint),
                       Lock(policy.holder, now_ms + policy.lock_lease_ms))
    if view.lock is None:
        return (Change(Action.CREATE, mine),)
    seen = RecordSet(names.lock_name(endpoint), RecordType.TXT, view.lock)
    return (Change(Action.DELETE, seen), Change(Action.CREATE, mine))


def _capacity(addresses: tuple[WeightedAddress, ...]) -> int:
    return sum(a.weight for a in addresses)


def validate_endpoint(endpoint: str, addresses: tuple[WeightedAddress, ...],
                      view: EndpointRecords, policy: Policy) -> Refuse | None:
    """Plan validation: no empty endpoint, no loss of too much capacity at once."""
    if not addresses:
        return Refuse(RefuseReason.NO_HEALTHY_ADDRESS, f"{endpoint} has no healthy address")
    if view.alias_target is not None:
        current = _capacity(decode_addresses(view.alias_target))
        floor = current * (1 - policy.max_capacity_drop)
        if current and _capacity(addresses) < floor:
            return Refuse(RefuseReason.CAPACITY_DROP,
                          f"{endpoint} capacity {current} -> {_capacity(addresses)}")
    return None


def decide_endpoint(generation: int, endpoint: str, addresses: tuple[WeightedAddress, ...],
                    view: EndpointRecords, policy: Policy, now_ms: int) -> Decision:
    """The change batch that applies plan ``generation`` to one endpoint, or why not."""
    tree = names.tree_name(generation, endpoint)
    alias = decode_alias(view.alias) if view.alias else None
    fenced = policy.has("fenced_commit")

    if alias is not None and alias.target == tree and view.alias_target is not None:
        return Skip(SkipReason.ALREADY_APPLIED)
    if fenced and alias is not None and alias.generation > generation:
        return Skip(SkipReason.NEWER_APPLIED)
    if policy.has("plan_validation"):
        refusal = validate_endpoint(endpoint, addresses, view, policy)
        if refusal is not None:
            return refusal
    lock = decode_lock(view.lock) if view.lock else None
    if lock is not None and lock.held_by_other(policy.holder, now_ms):
        return Backoff(lock.holder)

    changes = list(_lock_changes(view, endpoint, policy, now_ms))
    wanted_tree = a_records(tree, addresses)
    if view.tree is None:
        changes.append(Change(Action.CREATE, wanted_tree))
    elif view.tree != wanted_tree.value:
        changes.append(Change(Action.UPSERT, wanted_tree))

    new_alias = alias_record(endpoint, Alias(tree, generation))
    if fenced and view.alias is not None:
        changes.append(Change(Action.DELETE, RecordSet(endpoint, RecordType.ALIAS, view.alias)))
        changes.append(Change(Action.CREATE, new_alias))
    else:
        changes.append(Change(Action.UPSERT, new_alias))

    rollback_changes, rollback_generation, repairs = _rollback(endpoint, tree, alias, view,
                                                               policy)
    changes.extend(rollback_changes)
    batch = ChangeBatch(
        tuple(changes),
        fences=(GenerationFence(endpoint, generation + 1),) if fenced else (),
        not_after_ms=now_ms + policy.lock_lease_ms if fenced else None,
        comment=f"{policy.holder} applies plan {generation} to {endpoint}",
    )
    return Commit(batch, alias.generation if alias else 0, rollback_generation, repairs)


def window_cut(decisions: Sequence[Decision], stalled: Sequence[bool]) -> int:
    """How many endpoints of a window may be batched: the index of the first that must go alone.

    An endpoint goes alone when another enactor holds its lock (it backs off and retries, and
    the endpoints after it wait, as in a one-at-a-time walk) or when a stall names its flip
    (``stalled[index]``): everything before it is committed before the stall.
    ``len(decisions)`` when none must.
    """
    for index, decision in enumerate(decisions):
        if isinstance(decision, Backoff) or (isinstance(decision, Commit) and stalled[index]):
            return index
    return len(decisions)


def _rollback(endpoint: str, tree: str, alias: Alias | None, view: EndpointRecords,
              policy: Policy) -> tuple[list[Change], int, bool]:
    """Point the rollback at the tree the alias named before: (changes, generation, repairs).

    legacy does so blindly: when that tree was deleted, Route 53's alias rule rejects the
    batch, and every later apply of every plan is rejected the same way. With self-repair
    the enactor sees the dangling alias and keeps a rollback that still resolves instead.
    """
    name = names.rollback_name(endpoint)
    current = decode_alias(view.rollback).generation if view.rollback else 0
    if alias is None or alias.target == tree:
        return [], current, False
    dangling = view.alias_target is None
    if not dangling or not policy.has("self_repair"):
        return [Change(Action.UPSERT, alias_record(name, alias))], alias.generation, False
    if view.rollback is None or view.rollback_target is not None:
        return [], current, True
    stale = RecordSet(name, RecordType.ALIAS, view.rollback)
    return [Change(Action.DELETE, stale)], 0, True


@dataclass(frozen=True)
class TreeRemoval:
    tree: str
    endpoint: str
    generation: int
    live: bool
    """An alias or rollback named this tree when clean-up decided to delete it."""
    change: Change


def plan_cleanup(applied_generation: int, trees: Mapping[str, str],
                 references: Mapping[str, int], policy: Policy,
                 newest: Sequence[int] | None = None) -> list[TreeRemoval]:
    """Trees to delete after applying ``applied_generation``, oldest first.

    legacy: every tree more than ``cleanup_age`` generations older, by age alone.
    safe clean-up: never a tree an alias or rollback names (checked again atomically at
    delete time with ``if_unreferenced``), and never one of the ``keep_newest`` newest
    generations: those of ``newest`` (the zone's newest generations with trees, newest first)
    when ``trees`` holds only the old ones, else found in ``trees``.
    """
    safe = policy.has("safe_cleanup")
    parsed = [(names.parse_tree(name), name, value) for name, value in trees.items()]
    generations = (list(newest) if newest is not None else
                   sorted({t.generation for t, _, _ in parsed if t is not None}, reverse=True))
    kept = set(generations[:policy.keep_newest]) if safe else set()
    threshold = applied_generation - policy.cleanup_age
    removals = []
    for tree_id, name, value in parsed:
        if tree_id is None or tree_id.generation >= threshold:
            continue
        live = references.get(name, 0) > 0
        if safe and (live or tree_id.generation in kept):
            continue
        rrset = RecordSet(name, RecordType.A, value)
        change = Change(Action.DELETE, rrset, if_unreferenced=safe)
        removals.append(TreeRemoval(name, tree_id.endpoint, tree_id.generation, live, change))
    removals.sort(key=lambda r: (r.generation, r.tree))
    return removals
