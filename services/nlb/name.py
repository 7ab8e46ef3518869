"""The NLB's DNS name as change batches: one A record per AZ node that failover keeps in it.

``<nlb>.elb.us-east-1.amazonaws.com`` holds the address of each AZ's proxy node whose AZ is in
the name (:func:`services.nlb.failover.decide`). Every change is one UPSERT batch through the
zone store, as Route 53 takes it; a name failover emptied holds no address (NOERROR, no A).
Pure: builds the batch, writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.core import names
from services.core.records import Action, Change, ChangeBatch, WeightedAddress, a_records


def nlb_name(nlb: str) -> str:
    """The NLB's DNS name in our zone."""
    if not nlb or not all(c.isalnum() or c == "-" for c in nlb):
        raise ValueError(f"an NLB name is letters, digits and '-', not {nlb!r}")
    return f"{nlb}.elb.{names.ZONE}"


def name_batch(nlb: str, in_name: Sequence[str], nodes: Mapping[str, str]) -> ChangeBatch:
    """The batch that makes the name hold exactly the nodes of the AZs ``in_name``."""
    unknown = [az for az in in_name if az not in nodes]
    if unknown:
        raise ValueError(f"no NLB node in {', '.join(unknown)}")
    rows = [WeightedAddress(nodes[az], 1) for az in in_name]
    return ChangeBatch((Change(Action.UPSERT, a_records(nlb_name(nlb), rows)),),
                       comment=f"{nlb}: AZs in the name {', '.join(in_name) or 'none'}")
