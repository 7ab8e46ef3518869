"""change_batch.lua takes several batches per call (issue 16): each is still its own atomic
commit, judged after the ones before it, with its own serial and notification."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    Committed,
    GenerationFence,
    Lock,
    RecordSet,
    RecordType,
    Rejected,
    RejectReason,
    WeightedAddress,
    a_records,
    alias_record,
    canonical,
    decode_alias,
    decode_lock,
    lock_record,
)
from services.store.zone import BATCHES_PER_CALL, ZoneChange, ZoneKeys, ZoneStore
from tests.conftest import ManualClock


def _tree(i: int) -> RecordSet:
    return a_records(f"plan-1.e{i}.example", [WeightedAddress("127.0.10.1", 10)])


async def _following(zone: ZoneStore
                     ) -> tuple[AsyncGenerator[ZoneChange, None], asyncio.Future[ZoneChange]]:
    """The zone's notifications from now on, and the first of them to come, once Redis has
    confirmed the subscription."""
    confirmed = asyncio.Event()

    async def resync() -> None:
        confirmed.set()

    stream = zone.changes(resync=resync)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.wait_for(confirmed.wait(), 5)
    return stream, first


async def test_batches_across_calls_commit_in_order_each_alone(zone: ZoneStore) -> None:
    """More batches than one call takes, one refused in the middle of a call and one on a
    call's edge: the others commit, in order, one serial and one notification each."""
    count = 2 * BATCHES_PER_CALL + 3
    refused_at = {5, BATCHES_PER_CALL}  # in a call, and the first of the second call
    await zone.apply(ChangeBatch((Change(Action.CREATE, _tree(5)),
                                  Change(Action.CREATE, _tree(BATCHES_PER_CALL)))))
    before = await zone.serial()
    stream, first = await _following(zone)
    batches = [ChangeBatch((Change(Action.CREATE, _tree(i)),
                            Change(Action.UPSERT, alias_record(f"e{i}.example",
                                                               Alias(_tree(i).name, 1)))))
               for i in range(count)]
    outcomes = await zone.apply_many(batches)
    assert [i for i, o in enumerate(outcomes) if isinstance(o, Rejected)] == sorted(refused_at)
    assert all(o.reason is RejectReason.CREATE_EXISTS
               for o in outcomes if isinstance(o, Rejected))
    serials = [o.serial for o in outcomes if isinstance(o, Committed)]
    assert serials == list(range(before + 1, before + 1 + count - len(refused_at)))
    notified = [await asyncio.wait_for(first, 5)]
    while len(notified) < len(serials):
        notified.append(await asyncio.wait_for(anext(stream), 5))
    await stream.aclose()
    assert [n.serial for n in notified] == serials
    assert notified[0].keys == (f"{_tree(0).name}|A", "e0.example|ALIAS")
    snap = await zone.snapshot()
    assert snap.alias("e5.example") is None  # the refused batch wrote nothing
    assert snap.alias(f"e{count - 1}.example") == Alias(_tree(count - 1).name, 1)
    assert await zone.references() == {_tree(i).name: 1 for i in range(count)
                                       if i not in refused_at}


async def test_a_batch_of_more_changes_than_lua_unpacks_at_once_commits(
        zone: ZoneStore) -> None:
    """A bulk batch (the benches' loads, a clean-up's prune) of 6,000 record sets: its reads
    and writes are sliced inside the script; the clean-up's scan finds every tree."""
    trees = [_tree(i) for i in range(6000)]
    done = await zone.apply(ChangeBatch(tuple(Change(Action.CREATE, t) for t in trees)))
    values = await zone.get_many([t.key for t in trees])
    assert all(values[t.key] == t.value for t in trees)
    assert await zone.trees() == {t.name: t.value for t in trees}  # several scan steps
    gone = await zone.apply(ChangeBatch(tuple(Change(Action.DELETE, t) for t in trees)))
    assert gone.serial == done.serial + 1
    assert set((await zone.get_many([t.key for t in trees])).values()) == {None}


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=12), st.integers(min_value=-(2**53), max_value=2**53))
def test_aliases_and_locks_are_spelled_canonically(text: str, number: int) -> None:
    """The spelled-out encodings are byte for byte ``canonical`` (a DELETE matches bytes)."""
    assert alias_record("n", Alias(text, number)) == RecordSet(
        "n", RecordType.ALIAS, canonical({"target": text, "generation": number}))
    assert lock_record("n", Lock(text, number)) == RecordSet(
        "n", RecordType.TXT, canonical({"holder": text, "expires_ms": number}))
    assert decode_alias(alias_record("n", Alias(text, number)).value) == Alias(text, number)
    assert decode_lock(lock_record("n", Lock(text, number)).value) == Lock(text, number)
    spaced = json.dumps({"generation": number, "target": text}, ensure_ascii=False, indent=1)
    assert decode_alias(spaced) == Alias(text, number)  # any JSON spelling reads the same


_names = st.text(max_size=8)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Action)), _names, st.sampled_from(list(RecordType)),
                          _names, st.booleans()), min_size=1, max_size=4),
       st.lists(st.tuples(_names, st.integers(0, 2**40)), max_size=2),
       st.none() | st.integers(0, 2**50))
def test_a_batch_is_sent_as_the_compact_json_of_its_fields(
        changes: list[tuple[Action, str, RecordType, str, bool]],
        fences: list[tuple[str, int]], not_after_ms: int | None) -> None:
    batch = ChangeBatch(tuple(Change(a, RecordSet(n, t, v), u) for a, n, t, v, u in changes),
                        tuple(GenerationFence(n, b) for n, b in fences), not_after_ms)
    assert batch.to_json() == json.dumps({
        "changes": [{"action": a.value, "name": n, "type": t.value, "value": v,
                     "if_unreferenced": u} for a, n, t, v, u in changes],
        "fences": [{"name": n, "below": b} for n, b in fences],
        "not_after_ms": not_after_ms}, separators=(",", ":"))


async def test_notifications_carry_values_in_lines_or_json_when_a_value_breaks_lines(
        zone: ZoneStore) -> None:
    """A follower reads the same change whichever form it came in: a value with a line break
    (no record set the enactor writes has one) makes the batch's notification JSON."""
    stream, first = await _following(zone)
    odd = RecordSet("odd.example", RecordType.TXT, '{"note":"two\nlines"}')
    plain, broken, deleted = await zone.apply_many([
        ChangeBatch((Change(Action.CREATE, _tree(1)),)),
        ChangeBatch((Change(Action.CREATE, odd), Change(Action.DELETE, _tree(1)))),
        ChangeBatch((Change(Action.DELETE, odd),)),
    ])
    seen = [await asyncio.wait_for(first, 5)]
    seen += [await asyncio.wait_for(anext(stream), 5) for _ in range(2)]
    await stream.aclose()
    assert [(c.serial, c.keys, c.values) for c in seen] == [
        (plain.serial, (_tree(1).key,), (_tree(1).value,)),
        (broken.serial, (odd.key, _tree(1).key), (odd.value, None)),
        (deleted.serial, (odd.key,), (None,)),
    ]
    assert all(c.at_ms > 0 for c in seen)


async def test_the_clean_ups_reads_keep_every_byte_also_a_line_break(zone: ZoneStore) -> None:
    """trees() and references() come back joined by line breaks; a name or value holding one
    (nothing this project writes, but Redis holds what anyone wrote) comes back as JSON, the
    same bytes either way; an empty zone reads as empty."""
    assert await zone.trees() == {} and await zone.references() == {}
    trees = [_tree(i) for i in range(3)]
    flip = Change(Action.UPSERT, alias_record("e0.example", Alias(trees[0].name, 1)))
    await zone.apply(ChangeBatch((*(Change(Action.CREATE, t) for t in trees), flip)))
    expected = {t.name: t.value for t in trees}
    assert await zone.trees() == expected
    assert await zone.references() == {trees[0].name: 1}
    odd = "plan-1.odd\nname.example"
    await zone.client.hset(zone.keys.rrsets, f"{odd}|A", '{"records":\n[]}')
    await zone.client.hset(zone.keys.refs, odd, 2)
    assert await zone.trees() == expected | {odd: '{"records":\n[]}'}
    assert await zone.references() == {trees[0].name: 1, odd: 2}


def _random_batch(rng: random.Random) -> ChangeBatch:
    """One to three changes over two endpoints' trees and aliases: creates, upserts, deletes
    (guarded or not, of values that may be stale), and sometimes a generation fence."""
    changes = []
    for _ in range(rng.randint(1, 3)):
        endpoint = f"e{rng.randint(0, 1)}.example"
        generation = rng.randint(1, 3)
        tree = a_records(f"plan-{generation}.{endpoint}",
                         [WeightedAddress(f"127.0.10.{rng.randint(1, 2)}", 10)])
        alias = alias_record(endpoint, Alias(tree.name, generation))
        rrset = rng.choice((tree, alias))
        action = rng.choice(list(Action))
        changes.append(Change(action, rrset, if_unreferenced=rng.random() < 0.5))
    fences = ((GenerationFence("e0.example", rng.randint(1, 4)),) if rng.random() < 0.3
              else ())
    return ChangeBatch(tuple(changes), fences)


async def _state(zone: ZoneStore) -> tuple[int, dict[str, str], dict[str, int], dict[str, str]]:
    snap = await zone.snapshot()
    return snap.serial, snap.rrsets, await zone.references(), await zone.trees()


@pytest.mark.parametrize("seed", range(6))
async def test_a_call_of_many_batches_leaves_the_zone_as_the_batches_one_by_one(
        redis_client: aioredis.Redis, clock: ManualClock, prefix: str, seed: int) -> None:
    """change_batch.lua keeps a call's writes until its end, judging each batch by what the
    ones before it wrote: 200 random batches sent 40 per round-trip (several per call) and
    sent one per call give the same outcomes, record sets, reference counts, trees and
    serial."""
    rng = random.Random(seed)
    batches = [_random_batch(rng) for _ in range(200)]
    together = ZoneStore(redis_client, ZoneKeys(f"{prefix}-together"), clock=clock)
    alone = ZoneStore(redis_client, ZoneKeys(f"{prefix}-alone"), clock=clock)
    outcomes_together = [o for i in range(0, len(batches), 40)
                         for o in await together.apply_many(batches[i:i + 40])]
    outcomes_alone = [(await alone.apply_many([batch]))[0] for batch in batches]
    assert [_shape(o) for o in outcomes_together] == [_shape(o) for o in outcomes_alone]
    assert sum(isinstance(o, Committed) for o in outcomes_alone) >= 20  # not all refused
    assert await _state(together) == await _state(alone)
    old_together = await together.old_trees(below=4, newest=3)
    assert old_together == await alone.old_trees(below=4, newest=3)


def _shape(outcome: Committed | Rejected) -> tuple[object, ...]:
    """An outcome without its commit time."""
    if isinstance(outcome, Committed):
        return ("committed", outcome.serial, outcome.live_deleted)
    return ("rejected", outcome.reason, outcome.index)


async def test_a_call_that_fails_part_way_writes_nothing_and_tells_nobody(
        zone: ZoneStore) -> None:
    """An alias value no writer of ours makes (not JSON) makes the script fail at the second
    batch of a call: the first batch, valid, is neither written nor notified, and the error
    says what failed."""
    await zone.client.hset(zone.keys.rrsets, "e1.example|ALIAS", "not json")
    before = await zone.serial()
    stream, notified = await _following(zone)
    flip = Change(Action.UPSERT, alias_record("e1.example", Alias(_tree(1).name, 1)))
    with pytest.raises(redis.exceptions.ResponseError, match="found invalid token"):
        await zone.apply_many([ChangeBatch((Change(Action.CREATE, _tree(0)),)),
                               ChangeBatch((Change(Action.CREATE, _tree(1)), flip))])
    assert await zone.serial() == before
    assert (await zone.get_many([_tree(0).key]))[_tree(0).key] is None
    await zone.apply(ChangeBatch((Change(Action.CREATE, _tree(2)),)))  # the next commit
    first = await asyncio.wait_for(notified, 5)  # is the first anyone hears of
    await stream.aclose()
    assert (first.serial, first.keys) == (before + 1, (_tree(2).key,))
