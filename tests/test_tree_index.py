"""The tree index (issue 16): the clean-up reads the old trees from a sorted set that
change_batch.lua keeps in the same commit as the trees, not from a scan of the whole zone.

Whatever batches did, the index must name exactly the zone's trees; a zone written before the
index existed is indexed on the clean-up's first read; and the reference counts the clean-up
reads are those of the trees it may delete."""

from __future__ import annotations

import random

import pytest

from services.core import names
from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    RecordSet,
    WeightedAddress,
    a_records,
    alias_record,
)
from services.store.zone import ZoneStore

ENDPOINTS = ("e0.example", "e1.example", "e2.example")


def _tree(generation: int, endpoint: str, last_octet: int = 1) -> RecordSet:
    return a_records(names.tree_name(generation, endpoint),
                     [WeightedAddress(f"127.0.10.{last_octet}", 10)])


def _generation(tree: str) -> int:
    parsed = names.parse_tree(tree)
    assert parsed is not None, tree
    return parsed.generation


async def _forget_the_index(zone: ZoneStore) -> None:
    """The zone as a dnsrace from before the index left it: trees, no index."""
    await zone.client.delete(zone.keys.trees, zone.keys.trees_indexed,
                             *(zone.keys.trees_of(g) for g in range(1, 5)))


async def test_old_trees_are_those_below_the_generation_with_their_values(
        zone: ZoneStore) -> None:
    """Trees of generations 1 to 4 on two endpoints; one of them re-written (UPSERT), one
    deleted. Below 3: generation 1 and 2's trees, the re-written one with its new value; the
    newest two generations are 4 and 3."""
    trees = [_tree(g, e) for g in range(1, 5) for e in ENDPOINTS[:2]]
    await zone.apply(ChangeBatch(tuple(Change(Action.CREATE, t) for t in trees)))
    rewritten = _tree(2, ENDPOINTS[0], last_octet=9)
    await zone.apply(ChangeBatch((Change(Action.UPSERT, rewritten),
                                  Change(Action.DELETE, _tree(1, ENDPOINTS[1])))))
    old = await zone.old_trees(below=3, newest=2)
    assert old.trees == {_tree(1, ENDPOINTS[0]).name: _tree(1, ENDPOINTS[0]).value,
                         rewritten.name: rewritten.value,
                         _tree(2, ENDPOINTS[1]).name: _tree(2, ENDPOINTS[1]).value}
    assert old.newest == (4, 3)
    assert (await zone.old_trees(below=1, newest=9)).trees == {}
    assert (await zone.old_trees(below=1, newest=9)).newest == (4, 3, 2, 1)


async def test_an_empty_zone_has_no_old_trees(zone: ZoneStore) -> None:
    old = await zone.old_trees(below=100, newest=3)
    assert old.trees == {} and old.newest == ()


async def test_a_zone_from_before_the_index_is_indexed_on_the_first_read(
        zone: ZoneStore) -> None:
    """3,000 trees written, the index then removed (as a zone from an older dnsrace has none):
    the clean-up's first read indexes every tree (several scan steps) and finds them; a tree
    written after that is indexed by its batch."""
    trees = [_tree(1 + i % 3, f"e{i}.example") for i in range(3000)]
    await zone.apply(ChangeBatch(tuple(Change(Action.CREATE, t) for t in trees)))
    await _forget_the_index(zone)
    old = await zone.old_trees(below=3, newest=3)
    assert old.trees == {t.name: t.value for t in trees if _generation(t.name) < 3}
    assert old.newest == (3, 2, 1)
    assert sum([await zone.client.scard(zone.keys.trees_of(g)) for g in (1, 2, 3)]) == 3000
    later = _tree(2, "late.example")
    await zone.apply(ChangeBatch((Change(Action.CREATE, later),)))
    assert later.name in (await zone.old_trees(below=3, newest=0)).trees


async def test_references_of_the_names_asked_only_those_named(zone: ZoneStore) -> None:
    """references(of) counts the aliases naming each name asked; unnamed ones are left out."""
    trees = [_tree(1, e) for e in ENDPOINTS]
    flips = [Change(Action.UPSERT, alias_record(e, Alias(trees[0].name, 1)))
             for e in ENDPOINTS[:2]]
    await zone.apply(ChangeBatch((*(Change(Action.CREATE, t) for t in trees), *flips)))
    asked = [t.name for t in trees[:2]] + ["plan-9.nowhere.example"]
    assert await zone.references(asked) == {trees[0].name: 2}
    assert await zone.references([]) == {}


@pytest.mark.parametrize("seed", range(8))
async def test_the_index_names_exactly_the_zones_trees(zone: ZoneStore, seed: int) -> None:
    """Random sequences of creates, deletes and upserts of trees, each its own batch (refused
    ones write nothing): the index's view equals a scan of the zone, with or without a
    rebuild."""
    rng = random.Random(seed)
    for rebuild in (False, True):
        await zone.client.delete(*zone.keys.stored, *(zone.keys.trees_of(g) for g in range(1, 5)))
        await zone.old_trees(below=0, newest=0)  # an empty zone, indexed: batches keep it
        for _ in range(30):
            action = rng.choice(("create", "delete", "upsert"))
            tree = _tree(rng.randint(1, 4), rng.choice(ENDPOINTS), last_octet=rng.randint(1, 3))
            current = (await zone.get_many([tree.key]))[tree.key]
            if action == "delete" and current is not None:
                change = Change(Action.DELETE, RecordSet(tree.name, tree.type, current))
            elif action == "create":
                change = Change(Action.CREATE, tree)
            else:
                change = Change(Action.UPSERT, tree)
            await zone.apply_many([ChangeBatch((change,))])
        if rebuild:
            await _forget_the_index(zone)
        scanned = await zone.trees()
        old = await zone.old_trees(below=5, newest=4)
        generations = await zone.client.zrange(zone.keys.trees, 0, -1)
        assert sorted(map(int, generations)) == sorted({_generation(n) for n in scanned})
        indexed = [name for g in generations
                   for name in await zone.client.smembers(zone.keys.trees_of(g))]
        assert sorted(indexed) == sorted(scanned)
        assert old.trees == scanned
        assert old.newest == tuple(sorted({_generation(n) for n in scanned}, reverse=True))


async def test_a_generation_whose_trees_are_all_deleted_is_no_longer_among_the_newest(
        zone: ZoneStore) -> None:
    """The safe clean-up keeps the newest generations that have trees: one left without any
    must not be counted among them."""
    trees = [_tree(g, e) for g in (1, 2, 3) for e in ENDPOINTS]
    await zone.apply(ChangeBatch(tuple(Change(Action.CREATE, t) for t in trees)))
    assert (await zone.old_trees(below=1, newest=3)).newest == (3, 2, 1)
    await zone.apply(ChangeBatch(tuple(Change(Action.DELETE, t) for t in trees[6:])))
    assert (await zone.old_trees(below=1, newest=3)).newest == (2, 1)
