"""Record sets and change batches: the zone's data model, free of I/O.

A record set is keyed by (name, type); its value is canonical JSON so that a DELETE can match
the stored value byte for byte, exactly as Route 53 requires the full current record set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

from services.errors import DnsraceError


class RecordType(StrEnum):
    A = "A"
    ALIAS = "ALIAS"
    TXT = "TXT"
    SOA = "SOA"
    NS = "NS"


class Action(StrEnum):
    CREATE = "CREATE"
    DELETE = "DELETE"
    UPSERT = "UPSERT"


class RejectReason(StrEnum):
    """Why the zone refused a whole change batch (also the metric ``reason`` label)."""

    DELETE_MISSING = "delete_missing"
    DELETE_MISMATCH = "delete_mismatch"
    CREATE_EXISTS = "create_exists"
    ALIAS_TARGET_MISSING = "alias_target_missing"
    TREE_REFERENCED = "tree_referenced"
    GENERATION_FENCE = "generation_fence"
    LOCK_EXPIRED = "lock_expired"
    LOCK_CONFLICT = "lock_conflict"
    """A change to an endpoint's lock record failed: another enactor holds (or took) the lock."""
    BAD_ACTION = "bad_action"


# json.dumps(...) with arguments builds an encoder per call; these are built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def canonical(payload: Mapping[str, Any]) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces."""
    return _CANONICAL.encode(payload)


@dataclass(frozen=True, order=True)
class WeightedAddress:
    ip: str
    weight: int


@dataclass(frozen=True)
class Alias:
    """An alias names a tree; the tree's generation travels with it for the fenced commit."""

    target: str
    generation: int


@dataclass(frozen=True)
class Lock:
    holder: str
    expires_ms: int

    def held_by_other(self, me: str, now_ms: int) -> bool:
        return self.holder != me and self.expires_ms > now_ms


@dataclass(frozen=True)
class RecordSet:
    name: str
    type: RecordType
    value: str

    @property
    def key(self) -> str:
        return f"{self.name}|{self.type}"


@lru_cache(maxsize=4096)
def _tree_value(addresses: tuple[WeightedAddress, ...]) -> str:
    rows = [{"ip": a.ip, "weight": a.weight} for a in sorted(addresses)]
    return canonical({"records": rows})


def a_records(name: str, addresses: Iterable[WeightedAddress]) -> RecordSet:
    """A tree's record set. Plans give many endpoints the same addresses (one fleet), so each
    set of addresses is encoded once (an enactor encodes one tree per endpoint per plan)."""
    return RecordSet(name, RecordType.A, _tree_value(tuple(addresses)))


_string = json.encoder.encode_basestring_ascii
"""A JSON string as ``canonical`` spells it (ASCII only, escaped alike)."""


def alias_record(name: str, alias: Alias) -> RecordSet:
    """``canonical({"target": ..., "generation": ...})``, spelled out: one per endpoint per
    plan, where the general encoder costs several times as much."""
    return RecordSet(name, RecordType.ALIAS, f'{{"generation":{int(alias.generation)},'
                                             f'"target":{_string(alias.target)}}}')


def lock_record(name: str, lock: Lock) -> RecordSet:
    """``canonical({"holder": ..., "expires_ms": ...})``, spelled out as ``alias_record``."""
    return RecordSet(name, RecordType.TXT, f'{{"expires_ms":{int(lock.expires_ms)},'
                                           f'"holder":{_string(lock.holder)}}}')


def decode_addresses(value: str) -> tuple[WeightedAddress, ...]:
    rows = json.loads(value)["records"]
    return tuple(WeightedAddress(str(r["ip"]), int(r["weight"])) for r in rows)


_INT = r"(-?(?:0|[1-9][0-9]*))"
_PLAIN = r'"([^"\\\x00-\x1f\x7f-\uffff]*)"'
_ALIAS_SPELLING = re.compile(rf'\{{"generation":{_INT},"target":{_PLAIN}\}}\Z')
_LOCK_SPELLING = re.compile(rf'\{{"expires_ms":{_INT},"holder":{_PLAIN}\}}\Z')
"""The spellings ``alias_record`` and ``lock_record`` write when no character needs escaping:
read without the JSON decoder (an enactor reads two aliases and a lock per endpoint)."""


def decode_alias(value: str) -> Alias:
    plain = _ALIAS_SPELLING.match(value)
    if plain is not None:
        return Alias(plain[2], int(plain[1]))
    data = json.loads(value)
    return Alias(str(data["target"]), int(data["generation"]))


def decode_lock(value: str) -> Lock:
    plain = _LOCK_SPELLING.match(value)
    if plain is not None:
        return Lock(plain[2], int(plain[1]))
    data = json.loads(value)
    return Lock(str(data["holder"]), int(data["expires_ms"]))


@dataclass(frozen=True)
class Change:
    action: Action
    rrset: RecordSet
    if_unreferenced: bool = False
    """DELETE only: refuse if any alias names this record set (reference-safe clean-up)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": str(self.action),
            "name": self.rrset.name,
            "type": str(self.rrset.type),
            "value": self.rrset.value,
            "if_unreferenced": self.if_unreferenced,
        }


@dataclass(frozen=True)
class GenerationFence:
    """The alias at ``name`` must name a generation below ``below`` (or not exist) at commit."""

    name: str
    below: int


@dataclass(frozen=True)
class ChangeBatch:
    changes: tuple[Change, ...]
    fences: tuple[GenerationFence, ...] = ()
    not_after_ms: int | None = None
    """Reject the batch if the zone's clock is past this (a fenced lock lease)."""
    comment: str = ""

    def __post_init__(self) -> None:
        if not self.changes:
            raise ValueError("a change batch needs at least one change")

    def to_json(self) -> str:
        """``_COMPACT.encode`` of the batch as change_batch.lua reads it, byte for byte, spelled
        out (an enactor sends one batch per endpoint per plan)."""
        changes = ",".join(
            f'{{"action":{_string(c.action)},"name":{_string(c.rrset.name)},'
            f'"type":{_string(c.rrset.type)},"value":{_string(c.rrset.value)},'
            f'"if_unreferenced":{"true" if c.if_unreferenced else "false"}}}'
            for c in self.changes)
        fences = ",".join(f'{{"name":{_string(f.name)},"below":{int(f.below)}}}'
                          for f in self.fences)
        not_after = "null" if self.not_after_ms is None else int(self.not_after_ms)
        return f'{{"changes":[{changes}],"fences":[{fences}],"not_after_ms":{not_after}}}'


@dataclass(frozen=True)
class Committed:
    serial: int
    at_ms: int
    live_deleted: tuple[str, ...] = ()
    """Record sets this batch deleted while an alias or rollback still named them (I3)."""


class ZoneError(DnsraceError):
    """Base of the zone store's errors."""


class Rejected(ZoneError):
    """The zone refused a whole batch; nothing of it was written."""

    def __init__(self, reason: RejectReason, index: int, detail: str,
                 change: Change | None = None) -> None:
        self.reason = reason
        self.index = index
        self.detail = detail
        self.change = change
        where = f"change {index}" if index else "batch"
        super().__init__(f"{reason}: {where}: {detail}")


@dataclass
class ZoneSnapshot:
    """The whole zone at one serial: what the DNS server answers from."""

    serial: int
    rrsets: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, rtype: RecordType) -> str | None:
        return self.rrsets.get(f"{name}|{rtype}")

    def alias(self, name: str) -> Alias | None:
        value = self.get(name, RecordType.ALIAS)
        return decode_alias(value) if value is not None else None

    def addresses(self, name: str) -> tuple[WeightedAddress, ...] | None:
        value = self.get(name, RecordType.A)
        return decode_addresses(value) if value is not None else None

    def names(self) -> set[str]:
        return {key.rsplit("|", 1)[0] for key in self.rrsets}


@dataclass(frozen=True)
class EndpointRecords:
    """What one round-trip reads about an endpoint: its records and whether aliases resolve."""

    alias: str | None
    alias_target: str | None
    rollback: str | None
    rollback_target: str | None
    lock: str | None
    tree: str | None


@dataclass(frozen=True)
class OldTrees:
    """What the clean-up reads: the trees older than a generation, and the newest generations."""

    trees: dict[str, str]
    """Tree name -> value, for every tree older than the generation asked."""
    newest: tuple[int, ...]
    """The newest generations that have a tree, newest first (as many as asked)."""
