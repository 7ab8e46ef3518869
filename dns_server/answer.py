"""What to answer: a pure function of (zone, question). No I/O, no clock, no randomness.

Rules (all answers inside the zone carry AA):

- outside the zone, or a class other than IN, or a zone transfer: REFUSED, no data (we are
  not an open resolver and do not serve AXFR/IXFR);
- a name with no records and nothing below it: NXDOMAIN, SOA in authority;
- an empty non-terminal, or a name without the asked type: NODATA (NOERROR, SOA in authority);
- an endpoint (ALIAS at the name) asked for A: the A records of the tree the alias names, as
  one reply *variant* per address (that address first), each weighted by its weight; a
  missing or empty tree gives NOERROR with zero answers and the SOA (the 2025 outage);
- a tree or other A record set asked for A: its addresses, in stored order;
- the apex: SOA, and NS with the name servers' addresses as glue;
- TXT (locks): the stored JSON as text;
- ANY: the minimal answer of RFC 8482 section 4.2, one synthesized ``HINFO "RFC8482" ""``.

The SOA in every answer carries the zone serial. Its TTL in the authority section is
min(SOA minimum, TTL) (RFC 2308), so resolvers cache empty answers that long.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from dns_server.protocol import CLASS_IN, QType, Rcode
from dns_server.zone import Soa, Zone, normalize
from services.core import names
from services.core.records import WeightedAddress


@dataclass(frozen=True)
class Question:
    """One question: lower-case labels (latin-1 decoded, so any byte survives), type, class."""

    labels: tuple[str, ...]
    qtype: int
    qclass: int = CLASS_IN

    @classmethod
    def of(cls, name: str, qtype: int, qclass: int = CLASS_IN) -> Question:
        text = normalize(name)
        return cls(tuple(text.split(".")) if text else (), int(qtype), qclass)

    @property
    def name(self) -> str:
        return ".".join(self.labels)

    @property
    def plain(self) -> bool:
        """No label holds a dot: only such names can match a name in the zone."""
        return all("." not in label for label in self.labels)


@dataclass(frozen=True)
class ARdata:
    ip: str


@dataclass(frozen=True)
class NsRdata:
    host: str


@dataclass(frozen=True)
class SoaRdata:
    soa: Soa
    serial: int


@dataclass(frozen=True)
class TxtRdata:
    strings: tuple[bytes, ...]


@dataclass(frozen=True)
class HinfoRdata:
    cpu: str
    os: str


Rdata = ARdata | NsRdata | SoaRdata | TxtRdata | HinfoRdata


@dataclass(frozen=True)
class Record:
    name: str
    ttl: int
    rdata: Rdata


@dataclass(frozen=True)
class Variant:
    """One possible answer section; a reply picks a variant with probability weight/total."""

    weight: int
    answer: tuple[Record, ...]


@dataclass(frozen=True)
class Resolution:
    rcode: Rcode
    authoritative: bool
    variants: tuple[Variant, ...] = (Variant(1, ()),)
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    depends_on: frozenset[str] = frozenset()
    """Zone names whose records this answer was computed from (cache invalidation)."""
    serial_dependent: bool = False
    """The answer holds the SOA serial (or NXDOMAIN-ness), so any zone change invalidates it."""
    endpoint: str | None = None
    """The alias name behind an endpoint answer."""
    generation: int | None = None
    """The plan generation the alias names (also when its tree is missing)."""
    empty_alias: bool = False
    """An alias whose tree is missing or empty: the outage's empty answer."""

    @property
    def address_count(self) -> int:
        return sum(isinstance(r.rdata, ARdata) for r in self.variants[0].answer)


@dataclass(frozen=True)
class AnswerPolicy:
    ttl_s: int = 5
    apex: str = names.ZONE
    apex_labels: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "apex_labels", tuple(self.apex.split(".")))


RFC8482_HINFO = HinfoRdata("RFC8482", "")
_NOT_SERVED = frozenset({QType.AXFR, QType.IXFR})


def resolve(zone: Zone, question: Question, policy: AnswerPolicy) -> Resolution:
    """The answer to one question from the zone as it is now."""
    labels = question.labels
    apex = policy.apex_labels
    if (question.qclass != CLASS_IN or labels[len(labels) - len(apex):] != apex
            or question.qtype in _NOT_SERVED):
        return Resolution(Rcode.REFUSED, authoritative=False)
    name = question.name
    if not question.plain or not zone.has_records(name):
        nodata = question.plain and zone.is_empty_nonterminal(name)
        rcode = Rcode.NOERROR if nodata else Rcode.NXDOMAIN
        return _negative(zone, policy, rcode, frozenset({name}))
    qtype = question.qtype
    ttl = policy.ttl_s
    if qtype == QType.ANY:
        return _positive((Record(name, ttl, RFC8482_HINFO),), frozenset({name}))
    if qtype == QType.A:
        alias = zone.alias(name)
        if alias is not None:
            return _alias_answer(zone, policy, name, alias.target, alias.generation)
        addresses = zone.addresses(name)
        if addresses is not None and addresses.records:
            answer = tuple(Record(name, ttl, ARdata(a.ip)) for a in addresses.records)
            return _positive(answer, frozenset({name}))
    elif qtype == QType.TXT:
        txt = zone.txt(name)
        if txt is not None:
            return _positive((Record(name, ttl, TxtRdata(_chunks(txt.text))),),
                             frozenset({name}))
    elif qtype == QType.SOA and name == policy.apex:
        soa = zone.soa(name)
        if soa is not None:
            return Resolution(Rcode.NOERROR, True,
                              (Variant(1, (Record(name, ttl, SoaRdata(soa, zone.serial)),)),),
                              depends_on=frozenset({name}), serial_dependent=True)
    elif qtype == QType.NS and name == policy.apex:
        ns = zone.ns(name)
        if ns is not None and ns.names:
            return _ns_answer(zone, policy, name, ns.names)
    return _negative(zone, policy, Rcode.NOERROR, frozenset({name}))


def _positive(answer: tuple[Record, ...], depends_on: frozenset[str]) -> Resolution:
    return Resolution(Rcode.NOERROR, True, (Variant(1, answer),), depends_on=depends_on)


def _negative(zone: Zone, policy: AnswerPolicy, rcode: Rcode, depends_on: frozenset[str],
              endpoint: str | None = None, generation: int | None = None) -> Resolution:
    soa = zone.soa(policy.apex)
    authority: tuple[Record, ...] = ()
    if soa is not None:
        ttl = min(soa.minimum, policy.ttl_s)
        authority = (Record(policy.apex, ttl, SoaRdata(soa, zone.serial)),)
    return Resolution(rcode, True, authority=authority, serial_dependent=True,
                      depends_on=depends_on, endpoint=endpoint, generation=generation,
                      empty_alias=endpoint is not None)


def _alias_answer(zone: Zone, policy: AnswerPolicy, name: str, target: str,
                  generation: int) -> Resolution:
    depends = frozenset({name, target})
    tree = zone.addresses(target)
    if tree is None or not tree.records:
        return _negative(zone, policy, Rcode.NOERROR, depends, endpoint=name,
                         generation=generation)
    return Resolution(Rcode.NOERROR, True, weighted_variants(name, tree.records, policy.ttl_s),
                      depends_on=depends, endpoint=name, generation=generation)


def weighted_variants(name: str, records: Sequence[WeightedAddress],
                      ttl: int) -> tuple[Variant, ...]:
    """One variant per address, that address first and the others after in stored order.

    Addresses of weight 0 are never first unless every weight is 0 (then all are equal),
    as with Route 53 weighted records.
    """
    rows = [Record(name, ttl, ARdata(a.ip)) for a in records]
    all_zero = not any(a.weight for a in records)
    variants = []
    for i, address in enumerate(records):
        weight = 1 if all_zero else address.weight
        if weight > 0:
            variants.append(Variant(weight, (rows[i], *rows[:i], *rows[i + 1:])))
    return tuple(variants)


def cumulative_weights(variants: Sequence[Variant]) -> tuple[int, ...]:
    total = 0
    sums = []
    for variant in variants:
        total += variant.weight
        sums.append(total)
    return tuple(sums)


def choose_variant(cumulative: Sequence[int], uniform: float) -> int:
    """The variant index for a uniform draw in [0, 1): variant i with probability w_i / total."""
    return bisect_right(cumulative, uniform * cumulative[-1])


def _ns_answer(zone: Zone, policy: AnswerPolicy, apex: str,
               hosts: tuple[str, ...]) -> Resolution:
    ttl = policy.ttl_s
    answer = tuple(Record(apex, ttl, NsRdata(host)) for host in hosts)
    glue: list[Record] = []
    for host in hosts:
        addresses = zone.addresses(host)
        if addresses is not None:
            glue.extend(Record(host, ttl, ARdata(a.ip)) for a in addresses.records)
    return Resolution(Rcode.NOERROR, True, (Variant(1, answer),), additional=tuple(glue),
                      depends_on=frozenset({apex, *hosts}))


def _chunks(text: str) -> tuple[bytes, ...]:
    data = text.encode()
    return tuple(data[i:i + 255] for i in range(0, len(data), 255)) or (b"",)
