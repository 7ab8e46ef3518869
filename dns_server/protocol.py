"""DNS protocol constants as enums (RFC 1035, 6891), shared by every layer of the server."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Rcode(IntEnum):
    """Response codes; BADVERS is an extended rcode carried partly in the OPT record."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16


class QType(IntEnum):
    """The query and record types this server knows by name (others pass through as ints)."""

    A = 1
    NS = 2
    SOA = 6
    HINFO = 13
    TXT = 16
    AAAA = 28
    OPT = 41
    IXFR = 251
    AXFR = 252
    ANY = 255


class EdnsKind(IntEnum):
    """Whether a query carried EDNS, and with the DO bit: part of the reply-cache key."""

    NONE = 0
    EDNS = 1
    EDNS_DO = 2


class MetricQType(StrEnum):
    """The bounded ``qtype`` label of the query counter."""

    A = "A"
    AAAA = "AAAA"
    TXT = "TXT"
    SOA = "SOA"
    NS = "NS"
    OTHER = "other"


CLASS_IN = 1
HEADER_LEN = 12
MAX_UDP_NO_EDNS = 512
OUR_UDP_SIZE = 1232
"""Our EDNS UDP payload size (DNS flag day 2020): what we advertise and the most we send."""
MAX_TCP_MESSAGE = 65535

_QTYPE_LABELS = {1: MetricQType.A, 28: MetricQType.AAAA, 16: MetricQType.TXT,
                 6: MetricQType.SOA, 2: MetricQType.NS}


def metric_qtype(qtype: int) -> MetricQType:
    return _QTYPE_LABELS.get(qtype, MetricQType.OTHER)
