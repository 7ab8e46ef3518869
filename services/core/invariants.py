"""Invariants I1-I3 (DESIGN.md section 5): the one vocabulary, and their judge on zone snapshots.

:class:`Invariant` and :class:`Violation` are what every check speaks: ``dnsrace check`` reads
them out of the history (:mod:`services.core.checker`), the interleaving explorer out of zone
snapshots (:class:`ZoneWatch`, here). Pure, no I/O.

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
from services.core.events import Event
from services.core.records import ZoneSnapshot


class Invariant(StrEnum):
    """An invariant by its short name (the value, as tables, JSON and ``--invariants`` write it)."""

    I1 = "I1"
    I2 = "I2"
    I3 = "I3"
    C1 = "C1"
    """The cascade's (DESIGN.md section 8): after DNS is repaired, leases recover."""
    C2 = "C2"
    """No instance in service before it has connectivity (issue 15)."""
    C3 = "C3"
    """AZ failover never removes more than the velocity limit (issue 15)."""

    @property
    def heading(self) -> str:
        """The short name and what it says: ``I1 no empty answer``."""
        return f"{self.value} {_SAYS[self]}"


_SAYS = {Invariant.I1: "no empty answer", Invariant.I2: "no regression",
         Invariant.I3: "never delete a live tree",
         Invariant.C1: "leases recover after the DNS repair",
         Invariant.C2: "no instance in service without connectivity",
         Invariant.C3: "AZ failover within the velocity limit"}
ALL_INVARIANTS: tuple[Invariant, ...] = (Invariant.I1, Invariant.I2, Invariant.I3)
"""The invariants of the DNS automation: what the explorer, Spin and the zone watch check."""
CASCADE_INVARIANTS: tuple[Invariant, ...] = (Invariant.C1, Invariant.C2, Invariant.C3)
"""The cascade's, judged from the history by ``dnsrace check`` (services.core.leases)."""


@dataclass
class Violation:
    """One violation of an invariant on one endpoint, in the incident's words."""

    invariant: Invariant
    endpoint: str
    summary: str
    """What broke, in the incident's words (``dynamodb... answers no address: ...``)."""
    at_ms: int = 0
    """When it broke (the history's time; the explorer's logical time)."""
    witnesses: list[Event] = field(default_factory=list)
    """The events that show it, in time order (the checker's; the explorer tells its own story)."""
    repeats: int = 1
    """How many times in a row the same violation was seen (an empty answer polled again)."""

    @property
    def text(self) -> str:
        """The summary headed by the invariant: ``I1: ... answers no address``."""
        return f"{self.invariant}: {self.summary}"


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
                Invariant.I1, endpoint,
                f"{endpoint} answers no address: its alias names {alias.target}, {why}"))
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
                    Invariant.I2, endpoint,
                    f"{endpoint} went back from plan {before} to plan {alias.generation}"))
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
            found.append(Violation(Invariant.I3, owners[0].endpoint if owners else "",
                                   f"{name} was deleted while {who} names it"))
        for ref in dangling:
            if ref.target not in live_deleted:
                found.append(Violation(
                    Invariant.I3, ref.endpoint,
                    f"the {ref.role} of {ref.endpoint} names {ref.target}, "
                    "which does not exist"))
        return found
