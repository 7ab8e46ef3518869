"""The zone in memory: typed record sets indexed by name, updated key by key from Redis.

Values are decoded once, when they arrive, never per query.  The index also knows which
names have descendants, so that an empty non-terminal (``ddb.<zone>`` above the cell
endpoints) answers NODATA rather than NXDOMAIN.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from services.core.records import (
    Alias,
    RecordType,
    WeightedAddress,
    ZoneSnapshot,
    decode_addresses,
    decode_alias,
)


@dataclass(frozen=True)
class Soa:
    mname: str
    rname: str
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True)
class NsSet:
    names: tuple[str, ...]


@dataclass(frozen=True)
class Txt:
    """A TXT record set holds one JSON value (a lock); it is served as its text."""

    text: str


@dataclass(frozen=True)
class Addresses:
    records: tuple[WeightedAddress, ...]


RecordValue = Addresses | Alias | Soa | NsSet | Txt
_TYPE_OF: dict[type, RecordType] = {Addresses: RecordType.A, Alias: RecordType.ALIAS,
                                    Soa: RecordType.SOA, NsSet: RecordType.NS,
                                    Txt: RecordType.TXT}


@dataclass(frozen=True)
class KeyUpdate:
    """What applying one record-set key did: the name it touched, and whether it decoded."""

    name: str
    valid: bool


def normalize(name: str) -> str:
    return name.rstrip(".").lower()


def split_key(key: str) -> tuple[str, str]:
    name, _, rtype = key.rpartition("|")
    return normalize(name), rtype


def _decode_soa(data: Any) -> Soa:
    return Soa(normalize(str(data["mname"])), normalize(str(data["rname"])), int(data["refresh"]),
               int(data["retry"]), int(data["expire"]), int(data["minimum"]))


@functools.lru_cache(maxsize=4096)
def _check_ipv4(ip: str) -> None:
    """Raises ValueError unless ``ip`` is a dotted IPv4 address (the fleet's few addresses
    recur in every tree: cached, since the zone decodes each tree again on every change)."""
    ipaddress.IPv4Address(ip)


@functools.lru_cache(maxsize=65_536)
def _weighted(ip: str, weight: int) -> WeightedAddress:
    """One shared object per (address, weight): a fleet has few, and a zone of a million
    record sets repeats them in every tree."""
    _check_ipv4(ip)
    if weight < 0:
        raise ValueError(f"negative weight {weight}")
    return WeightedAddress(ip, weight)


@functools.lru_cache(maxsize=16_384)
def _decode_addresses(raw: str) -> Addresses:
    """A tree's value, decoded once per distinct value (trees of many endpoints are equal)."""
    return Addresses(tuple(_weighted(r.ip, r.weight) for r in decode_addresses(raw)))


def decode_value(rtype: RecordType, raw: str) -> RecordValue:
    """The typed value of a stored record set; raises ValueError if it does not decode."""
    try:
        if rtype is RecordType.A:
            return _decode_addresses(raw)
        if rtype is RecordType.ALIAS:
            alias = decode_alias(raw)
            return Alias(normalize(alias.target), alias.generation)
        if rtype is RecordType.SOA:
            return _decode_soa(json.loads(raw))
        if rtype is RecordType.NS:
            return NsSet(tuple(normalize(str(n)) for n in json.loads(raw)["names"]))
        if rtype is RecordType.TXT:
            return Txt(raw)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"undecodable {rtype} value: {e}") from e
    raise ValueError(f"unsupported record type {rtype}")  # pragma: no cover


class Zone:
    """Typed record sets by (name, type), the serial they are at, and the name tree."""

    def __init__(self, serial: int = 0) -> None:
        self.serial = serial
        self._records: dict[str, RecordValue | dict[RecordType, RecordValue]] = {}
        """A name's one record set, or its record sets by type when it has several (a
        million names with one each: no dict per name)."""
        self._below: dict[str, int] = {}
        """For every ancestor of an existing name: how many existing names lie below it."""
        self.rejected = 0
        """Values loaded by ``from_snapshot`` that did not decode (served as absent)."""

    @classmethod
    def from_snapshot(cls, snapshot: ZoneSnapshot) -> Zone:
        zone = cls(snapshot.serial)
        for key, raw in snapshot.rrsets.items():
            zone.rejected += not zone.set(key, raw).valid
        return zone

    def set(self, key: str, raw: str | None) -> KeyUpdate:
        """Apply one stored key (``None``: deleted). An undecodable value counts as absent."""
        name, type_text = split_key(key)
        try:
            rtype = RecordType(type_text)
        except ValueError:
            return KeyUpdate(name, raw is None)
        value: RecordValue | None = None
        valid = True
        if raw is not None:
            try:
                value = decode_value(rtype, raw)
            except ValueError:
                valid = False
        records = self._records
        held = records.get(name)
        if value is None:
            if held is None:
                return KeyUpdate(name, valid)
            if isinstance(held, dict):
                held.pop(rtype, None)
                if len(held) == 1:
                    records[name] = next(iter(held.values()))
            elif _TYPE_OF[type(held)] is rtype:
                del records[name]
                self._count_ancestors(name, -1)
            return KeyUpdate(name, valid)
        if held is None:
            records[name] = value
            self._count_ancestors(name, +1)
        elif isinstance(held, dict):
            held[rtype] = value
        elif _TYPE_OF[type(held)] is rtype:
            records[name] = value
        else:
            records[name] = {_TYPE_OF[type(held)]: held, rtype: value}
        return KeyUpdate(name, valid)

    def _count_ancestors(self, name: str, delta: int) -> None:
        for ancestor in _ancestors(name):
            left = self._below.get(ancestor, 0) + delta
            if left:
                self._below[ancestor] = left
            else:
                self._below.pop(ancestor, None)

    def get(self, name: str, rtype: RecordType) -> RecordValue | None:
        held = self._records.get(name)
        if held is None:
            return None
        if isinstance(held, dict):
            return held.get(rtype)
        return held if _TYPE_OF[type(held)] is rtype else None

    def has_records(self, name: str) -> bool:
        return name in self._records

    def is_empty_nonterminal(self, name: str) -> bool:
        return name not in self._records and name in self._below

    def addresses(self, name: str) -> Addresses | None:
        value = self.get(name, RecordType.A)
        return value if isinstance(value, Addresses) else None

    def alias(self, name: str) -> Alias | None:
        value = self.get(name, RecordType.ALIAS)
        return value if isinstance(value, Alias) else None

    def soa(self, apex: str) -> Soa | None:
        value = self.get(apex, RecordType.SOA)
        return value if isinstance(value, Soa) else None

    def ns(self, apex: str) -> NsSet | None:
        value = self.get(apex, RecordType.NS)
        return value if isinstance(value, NsSet) else None

    def txt(self, name: str) -> Txt | None:
        value = self.get(name, RecordType.TXT)
        return value if isinstance(value, Txt) else None

    def names(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return sum(len(held) if isinstance(held, dict) else 1 for held in self._records.values())


def _ancestors(name: str) -> Iterator[str]:
    rest = name
    while "." in rest:
        rest = rest.split(".", 1)[1]
        yield rest
