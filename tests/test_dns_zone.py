"""The zone in memory: one record set per name kept without a dict of its own, several by
type; equal trees decoded once (a zone of a million record sets fits in memory)."""

from __future__ import annotations

from dns_server.zone import Zone
from services.core import names
from services.core.records import (
    Alias,
    Lock,
    RecordType,
    WeightedAddress,
    a_records,
    alias_record,
    lock_record,
)

ADDRESSES = [WeightedAddress("127.0.10.1", 3), WeightedAddress("127.0.10.2", 1)]


def test_a_name_holds_several_types_and_loses_them_one_by_one() -> None:
    zone = Zone(serial=1)
    alias = alias_record(names.REGIONAL, Alias(names.tree_name(1, names.REGIONAL), 1))
    lock = lock_record(names.REGIONAL, Lock("use1-az1", 5))
    zone.set(alias.key, alias.value)
    zone.set(lock.key, lock.value)
    assert zone.alias(names.REGIONAL) == Alias(names.tree_name(1, names.REGIONAL), 1)
    assert zone.txt(names.REGIONAL) is not None and len(zone) == 2
    zone.set(alias.key, None)
    assert zone.alias(names.REGIONAL) is None and zone.txt(names.REGIONAL) is not None
    assert zone.get(names.REGIONAL, RecordType.A) is None
    zone.set(alias.key, None)  # already gone: nothing changes
    assert len(zone) == 1 and zone.has_records(names.REGIONAL)
    zone.set(lock.key, None)
    assert not zone.has_records(names.REGIONAL) and len(zone) == 0
    assert not zone.is_empty_nonterminal(names.ZONE)


def test_a_set_of_another_type_replaces_nothing_and_a_delete_of_another_type_keeps_it() -> None:
    zone = Zone(serial=1)
    tree = a_records(names.tree_name(2, names.FIPS), ADDRESSES)
    zone.set(tree.key, tree.value)
    alias = alias_record(tree.name, Alias("elsewhere." + names.ZONE, 2))
    zone.set(alias.key, None)  # deleting an ALIAS the name does not have
    assert zone.addresses(tree.name) is not None and zone.alias(tree.name) is None


def test_equal_trees_of_different_endpoints_share_one_decoded_value() -> None:
    zone = Zone(serial=1)
    trees = [a_records(names.tree_name(2, names.cell_endpoint(i)), ADDRESSES) for i in range(3)]
    for tree in trees:
        zone.set(tree.key, tree.value)
    values = [zone.addresses(tree.name) for tree in trees]
    assert values[0] is not None and values[0].records == tuple(ADDRESSES)
    assert values[0] is values[1] is values[2]
    assert zone.is_empty_nonterminal(f"ddb.{names.ZONE}")
