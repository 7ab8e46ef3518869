"""Which protection sets hold which invariant: the table both checkers print, in one shape.

``dnsrace explore --matrix --json`` (the real code under a scheduler) and ``dnsrace
model-check --json`` (Spin on the Promela model) both print a :data:`VerdictMap`,
``{"<protection set>": {"I1": "holds"|"breaks", ...}, ...}``, with the protection sets
named by :func:`protection_set_name`, so that the two can be compared cell by cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from services.config import DNS_PROTECTIONS, Mode, Protection
from services.core.invariants import Invariant

Verdict = Literal["holds", "breaks"]
VerdictMap = dict[str, dict[str, Verdict]]
"""``{protection set name: {invariant: verdict}}``, rows and columns in the order given."""

LEGACY_NAME = "none (legacy)"
ALL_NAME = "all"


def protection_set_name(mode: Mode, protections: Iterable[Protection]) -> str:
    """``none (legacy)``, ``all`` (safe mode with every protection, or none named), or the
    protections on, comma separated, in the order of :data:`DNS_PROTECTIONS`."""
    if mode == "legacy":
        return LEGACY_NAME
    on = set(protections)
    if not on or on >= set(DNS_PROTECTIONS):
        return ALL_NAME
    return ",".join(p for p in DNS_PROTECTIONS if p in on)


def verdict_map(cells: Iterable[tuple[Mode, Iterable[Protection], Invariant, bool]]
                ) -> VerdictMap:
    """The map of ``(mode, protections, invariant, broke)`` cells."""
    table: VerdictMap = {}
    for mode, protections, invariant, broke in cells:
        row = table.setdefault(protection_set_name(mode, protections), {})
        row[str(invariant)] = "breaks" if broke else "holds"
    return table
