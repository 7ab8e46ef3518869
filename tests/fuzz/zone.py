"""The zone every fuzz input is answered from: apex, one endpoint with a weighted tree."""

from __future__ import annotations

from services.core import names
from services.core.records import Alias, WeightedAddress, ZoneSnapshot, a_records, alias_record
from services.store.zone import zone_apex_batch


def fuzz_zone() -> ZoneSnapshot:
    tree = a_records(names.tree_name(7, names.REGIONAL),
                     [WeightedAddress(f"127.0.10.{i}", 10 * i) for i in range(1, 4)])
    alias = alias_record(names.REGIONAL, Alias(tree.name, 7))
    dangling = alias_record(names.FIPS, Alias(names.tree_name(2, names.FIPS), 2))
    rrsets = {c.rrset.key: c.rrset.value for c in zone_apex_batch(5, 5).changes}
    rrsets.update({r.key: r.value for r in (tree, alias, dangling)})
    return ZoneSnapshot(11, rrsets)
