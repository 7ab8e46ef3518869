"""What a DNS response means to a stub resolver, and how long it may be cached: pure functions.

Positive answers are cached for the smallest TTL of the records used.  Negative answers
(NXDOMAIN, and NOERROR with no address: "NODATA") are cached as RFC 2308 section 5 says: for
the TTL of the SOA record in the authority section, bounded by that SOA's MINIMUM field; with no
SOA they are not cached.  Server failures and timeouts are never cached.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import QTYPE, RCODE, DNSLabel, DNSRecord

from loadgen.outcome import Outcome
from services.core.names import GENERATION_OPTION

MAX_CNAME_CHAIN = 8


@dataclass(frozen=True)
class Answer:
    """The meaning of one response: outcome, addresses, and seconds it may be cached."""

    outcome: Outcome
    addresses: tuple[str, ...] = ()
    cache_ttl_s: int | None = None
    """None: do not cache."""
    generation: int | None = None
    """The plan generation behind the answer, when the server said (EDNS option 65001)."""


def negative_cache_ttl(soa_ttl: int | None, soa_minimum: int | None) -> int | None:
    """RFC 2308: a negative answer lives min(SOA TTL, SOA MINIMUM) seconds; no SOA, no cache."""
    if soa_ttl is None or soa_minimum is None:
        return None
    ttl = min(soa_ttl, soa_minimum)
    return ttl if ttl > 0 else None


def _negative_ttl(response: DNSRecord) -> int | None:
    for rr in response.auth:
        if rr.rtype == QTYPE.SOA:
            return negative_cache_ttl(rr.ttl, rr.rdata.times[4])
    return None


def generation_of(response: DNSRecord) -> int | None:
    """The plan generation the dnsrace server put in the OPT record, if any."""
    for rr in response.ar:
        if rr.rtype == QTYPE.OPT:
            for option in rr.rdata:
                if option.code == GENERATION_OPTION and len(option.data) == 8:
                    return int.from_bytes(option.data, "big")
    return None


def interpret(response: DNSRecord, qname: str) -> Answer:
    """The outcome of a response to an A query for ``qname`` (CNAMEs in the answer followed)."""
    rcode = response.header.rcode
    if rcode == RCODE.NXDOMAIN:
        return Answer(Outcome.DNS_NXDOMAIN, cache_ttl_s=_negative_ttl(response))
    if rcode != RCODE.NOERROR:
        return Answer(Outcome.DNS_SERVFAIL)
    name = DNSLabel(qname)
    ttls: list[int] = []
    for _ in range(MAX_CNAME_CHAIN):
        addresses = [rr for rr in response.rr if rr.rtype == QTYPE.A and rr.rname == name]
        if addresses:
            ttls.extend(rr.ttl for rr in addresses)
            ttl = min(ttls)
            return Answer(Outcome.OK, tuple(str(rr.rdata) for rr in addresses),
                          ttl if ttl > 0 else None, generation_of(response))
        alias = next((rr for rr in response.rr if rr.rtype == QTYPE.CNAME and rr.rname == name),
                     None)
        if alias is None:
            break
        ttls.append(alias.ttl)
        name = alias.rdata.label
    return Answer(Outcome.DNS_NODATA, cache_ttl_s=_negative_ttl(response),
                  generation=generation_of(response))


def matches(response: DNSRecord, query: DNSRecord) -> bool:
    """Whether ``response`` answers ``query`` (same id and question, and is a response)."""
    return (response.header.qr == 1 and response.header.id == query.header.id
            and len(response.questions) == 1
            and response.q.qname == query.q.qname and response.q.qtype == query.q.qtype)
