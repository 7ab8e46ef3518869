"""Invariants I1-I3 (DESIGN.md section 5) judged on zone snapshots: pure, no I/O.

The interleaving explorer hands :class:`ZoneWatch` a snapshot after every step that changed
the zone (only a committed change batch does), together with what that batch deleted while
an alias still named it. The watch remembers the generation each endpoint's alias named, so
it can see a regression (I2) from one step to the next.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from services.core import names
from services.core.records import ZoneSnapshot


class Invariant(StrEnum):
    NO_EMPTY_ANSWER = "I1"
    NO_REGRESSION = "I2"
    NO_LIVE_DELETE = "I3"


ALL_INVARIANTS: tuple[Invariant, ...] = tuple(Invariant)


@dataclass(frozen=True)
class Violation:
    invariant: Invariant
    endpoint: str
    text: str
    """In the incident's words, starting with the invariant (``I1: ... answers no address``)."""


@dataclass(frozen=True)
class _Reference:
    endpoint: str
    role: str
    """``alias`` (the root alias) or ``rollback``."""
    target: str


def _references(snapshot: ZoneSnapshot, endpoint: str) -> list[_Reference]:
    found = []
    for role, name in (("alias", endpoint), ("rollback", names.rollback_name(endpoint))):
        alias = snapshot.alias(name)
        if alias is not None:
            found.append(_Reference(endpoint, role, alias.target))
    return found


def referrers(snapshot: ZoneSnapshot, endpoints: Iterable[str], tree: str) -> list[str]:
    """Who names ``tree``: ``the alias of E`` / ``the rollback of E``, for each endpoint E."""
    return [f"the {ref.role} of {ref.endpoint}" for endpoint in endpoints
            for ref in _references(snapshot, endpoint) if ref.target == tree]


@dataclass
class ZoneWatch:
    """Checks the zone after each step; ``observe`` returns the violations of that step."""

    endpoints: tuple[str, ...]
    checked: frozenset[Invariant] = frozenset(ALL_INVARIANTS)
    generations: dict[str, int] = field(default_factory=dict)
    """The generation each endpoint's alias named after the previous step."""

    def observe(self, snapshot: ZoneSnapshot,
                live_deleted: Iterable[str] = ()) -> list[Violation]:
        found = self._empty_answers(snapshot) + self._regressions(snapshot)
        found += self._live_deletes(snapshot, tuple(live_deleted))
        return [v for v in found if v.invariant in self.checked]

    def _empty_answers(self, snapshot: ZoneSnapshot) -> list[Violation]:
        found = []
        for endpoint in self.endpoints:
            alias = snapshot.alias(endpoint)
            if alias is None:
                continue  # never applied yet: the name does not exist, it is not empty
            addresses = snapshot.addresses(alias.target)
            if addresses:
                continue
            why = "which does not exist" if addresses is None else "which holds no record"
            found.append(Violation(
                Invariant.NO_EMPTY_ANSWER, endpoint,
                f"I1: {endpoint} answers no address: its alias names {alias.target}, {why}"))
        return found

    def _regressions(self, snapshot: ZoneSnapshot) -> list[Violation]:
        found = []
        for endpoint in self.endpoints:
            alias = snapshot.alias(endpoint)
            if alias is None:
                continue
            before = self.generations.get(endpoint, 0)
            if alias.generation < before:
                found.append(Violation(
                    Invariant.NO_REGRESSION, endpoint,
                    f"I2: {endpoint} went back from plan {before} to plan {alias.generation}"))
            self.generations[endpoint] = alias.generation
        return found

    def _live_deletes(self, snapshot: ZoneSnapshot,
                      live_deleted: tuple[str, ...]) -> list[Violation]:
        dangling = [ref for endpoint in self.endpoints for ref in _references(snapshot, endpoint)
                    if snapshot.addresses(ref.target) is None]
        found = []
        for name in live_deleted:
            owners = [ref for ref in dangling if ref.target == name]
            who = " and ".join(f"the {r.role} of {r.endpoint}" for r in owners) or "an alias"
            found.append(Violation(Invariant.NO_LIVE_DELETE, owners[0].endpoint if owners else "",
                                   f"I3: {name} was deleted while {who} names it"))
        for ref in dangling:
            if ref.target not in live_deleted:
                found.append(Violation(
                    Invariant.NO_LIVE_DELETE, ref.endpoint,
                    f"I3: the {ref.role} of {ref.endpoint} names {ref.target}, "
                    "which does not exist"))
        return found
