"""The enactor's decisions as pure functions: no Redis, no clock, no sockets."""

from __future__ import annotations

from services.config import ALL_PROTECTIONS, Protection
from services.core import names
from services.core.records import (
    Action,
    Alias,
    EndpointRecords,
    Lock,
    RecordType,
    WeightedAddress,
    a_records,
    alias_record,
    decode_alias,
    lock_record,
)
from services.enactor.decisions import (
    Backoff,
    Commit,
    Policy,
    Refuse,
    RefuseReason,
    Skip,
    SkipReason,
    decide_endpoint,
    plan_cleanup,
)

E = names.REGIONAL
NOW = 1_000_000
ADDRS = (WeightedAddress("127.0.10.1", 100), WeightedAddress("127.0.10.2", 100))


def policy(*protections: Protection, holder: str = "use1-az1") -> Policy:
    return Policy(holder=holder, protections=frozenset(protections))


def tree_value(generation: int, addresses: tuple[WeightedAddress, ...] = ADDRS) -> str:
    return a_records(names.tree_name(generation, E), addresses).value


def view(alias_gen: int | None = None, *, alias_exists: bool = True,
         rollback_gen: int | None = None, rollback_exists: bool = True,
         lock: Lock | None = None) -> EndpointRecords:
    alias = (alias_record(E, Alias(names.tree_name(alias_gen, E), alias_gen)).value
             if alias_gen is not None else None)
    rollback = (alias_record(names.rollback_name(E),
                             Alias(names.tree_name(rollback_gen, E), rollback_gen)).value
                if rollback_gen is not None else None)
    return EndpointRecords(
        alias=alias,
        alias_target=tree_value(alias_gen) if alias_gen is not None and alias_exists else None,
        rollback=rollback,
        rollback_target=(tree_value(rollback_gen)
                         if rollback_gen is not None and rollback_exists else None),
        lock=lock_record(names.lock_name(E), lock).value if lock else None,
        tree=None,
    )


def changed(decision: object) -> dict[tuple[str, RecordType], Action]:
    assert isinstance(decision, Commit), decision
    return {(c.rrset.name, c.rrset.type): c.action for c in decision.batch.changes}


def test_first_apply_takes_lock_builds_tree_and_flips_alias() -> None:
    decision = decide_endpoint(7, E, ADDRS, view(), policy(), NOW)
    assert changed(decision) == {
        (names.lock_name(E), RecordType.TXT): Action.CREATE,
        (names.tree_name(7, E), RecordType.A): Action.CREATE,
        (E, RecordType.ALIAS): Action.UPSERT,
    }


def test_newer_plan_moves_rollback_to_the_previous_tree() -> None:
    decision = decide_endpoint(8, E, ADDRS, view(7, rollback_gen=6), policy(), NOW)
    assert isinstance(decision, Commit)
    rollback = [c for c in decision.batch.changes if c.rrset.name == names.rollback_name(E)]
    assert decode_alias(rollback[0].rrset.value) == Alias(names.tree_name(7, E), 7)
    assert (decision.previous, decision.rollback) == (7, 7)


def test_legacy_flips_a_newer_endpoint_back_to_a_stale_plan() -> None:
    """The 2025 bug: no per-endpoint check, the stale plan overwrites the newer one."""
    decision = decide_endpoint(3, E, ADDRS, view(20), policy(), NOW)
    assert changed(decision)[(E, RecordType.ALIAS)] is Action.UPSERT
    assert isinstance(decision, Commit)
    assert decision.previous == 20 and not decision.batch.fences


def test_fenced_commit_skips_a_stale_plan_and_fences_the_flip() -> None:
    stale = decide_endpoint(3, E, ADDRS, view(20), policy("fenced_commit"), NOW)
    assert stale == Skip(SkipReason.NEWER_APPLIED)
    fresh = decide_endpoint(21, E, ADDRS, view(20), policy("fenced_commit"), NOW)
    assert isinstance(fresh, Commit)
    assert changed(fresh)[(E, RecordType.ALIAS)] is Action.CREATE  # after a DELETE of the seen
    assert [(f.name, f.below) for f in fresh.batch.fences] == [(E, 22)]
    assert fresh.batch.not_after_ms == NOW + 1000


def test_same_tree_is_skipped() -> None:
    assert decide_endpoint(7, E, ADDRS, view(7), policy(), NOW) == Skip(
        SkipReason.ALREADY_APPLIED)


def test_lock_held_by_another_enactor_backs_off_until_it_expires() -> None:
    held = Lock("use1-az2", NOW + 500)
    assert decide_endpoint(8, E, ADDRS, view(7, lock=held), policy(), NOW) == Backoff("use1-az2")
    expired = decide_endpoint(8, E, ADDRS, view(7, lock=held), policy(), NOW + 501)
    lock_changes = [c.action for c in expired.batch.changes  # type: ignore[union-attr]
                    if c.rrset.name == names.lock_name(E)]
    assert lock_changes == [Action.DELETE, Action.CREATE]


def test_legacy_points_rollback_at_a_deleted_tree_so_the_zone_rejects_it() -> None:
    """After the clean-up deleted the active tree, legacy keeps aiming rollback at it."""
    decision = decide_endpoint(30, E, ADDRS, view(3, alias_exists=False, rollback_gen=20),
                               policy(), NOW)
    assert isinstance(decision, Commit) and not decision.repairs
    rollback = [c for c in decision.batch.changes if c.rrset.name == names.rollback_name(E)]
    assert decode_alias(rollback[0].rrset.value).target == names.tree_name(3, E)


def test_self_repair_keeps_a_rollback_that_still_resolves() -> None:
    decision = decide_endpoint(30, E, ADDRS, view(3, alias_exists=False, rollback_gen=20),
                               policy("self_repair"), NOW)
    assert isinstance(decision, Commit) and decision.repairs
    assert (names.rollback_name(E), RecordType.ALIAS) not in changed(decision)
    assert decision.rollback == 20


def test_self_repair_drops_a_dangling_rollback() -> None:
    decision = decide_endpoint(30, E, ADDRS,
                               view(3, alias_exists=False, rollback_gen=2, rollback_exists=False),
                               policy("self_repair"), NOW)
    assert changed(decision)[(names.rollback_name(E), RecordType.ALIAS)] is Action.DELETE


def test_plan_validation_refuses_empty_endpoints_and_capacity_cliffs() -> None:
    empty = decide_endpoint(8, E, (), view(7), policy("plan_validation"), NOW)
    assert isinstance(empty, Refuse) and empty.reason is RefuseReason.NO_HEALTHY_ADDRESS
    small = (WeightedAddress("127.0.10.1", 40),)
    cliff = decide_endpoint(8, E, small, view(7), policy("plan_validation"), NOW)
    assert isinstance(cliff, Refuse) and cliff.reason is RefuseReason.CAPACITY_DROP
    assert isinstance(decide_endpoint(8, E, (), view(7), policy(), NOW), Commit)


def trees(*generations: int) -> dict[str, str]:
    return {names.tree_name(g, E): tree_value(g) for g in generations}


def test_legacy_cleanup_deletes_by_age_even_a_live_tree() -> None:
    removals = plan_cleanup(20, trees(3, 14, 15, 19, 20), {names.tree_name(3, E): 1}, policy())
    assert [(r.generation, r.live) for r in removals] == [(3, True), (14, False)]
    assert not any(r.change.if_unreferenced for r in removals)


def test_safe_cleanup_never_deletes_a_named_tree_and_keeps_the_newest() -> None:
    removals = plan_cleanup(20, trees(3, 10, 11, 12), {names.tree_name(3, E): 1},
                            Policy("use1-az2", frozenset(ALL_PROTECTIONS), keep_newest=2))
    assert [r.generation for r in removals] == [10]
    assert all(r.change.if_unreferenced for r in removals)


def test_safe_cleanup_keeps_the_newest_generations_it_is_told_of() -> None:
    """Given only the old trees (the tree index's read), the newest generations come from the
    zone: with 12 and 11 the newest two, trees 10 and 3 go, though no newer tree was given."""
    safe = Policy("use1-az2", frozenset(ALL_PROTECTIONS), keep_newest=2)
    assert [r.generation for r in plan_cleanup(20, trees(3, 10), {}, safe, newest=(12, 11))
            ] == [3, 10]
    assert [r.generation for r in plan_cleanup(20, trees(3, 10), {}, safe, newest=(10, 3))
            ] == []
