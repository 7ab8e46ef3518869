"""The server's errors: each class carries its meaning (an rcode, or a metric reason)."""

from __future__ import annotations

from enum import StrEnum

from dns_server.protocol import Rcode
from services.errors import DnsraceError


class MalformedReason(StrEnum):
    """The ``reason`` label of ``dnsrace_dns_malformed_total``."""

    DROPPED_SHORT = "dropped_short"
    DROPPED_RESPONSE = "dropped_response"
    FORMERR = "formerr"
    NOTIMP = "notimp"
    BADVERS = "badvers"


class ResyncReason(StrEnum):
    """The ``reason`` label of ``dnsrace_dns_resyncs_total``."""

    GAP = "gap"
    DISCONNECT = "disconnect"
    REDIS_RESTART = "redis_restart"
    SERIAL_REGRESSED = "serial_regressed"
    BAD_NOTIFICATION = "bad_notification"


class DnsServerError(DnsraceError):
    """Base of every error this package raises."""


class ListenAddressError(DnsServerError):
    """The configured DNS address is not a loopback address: we never serve the network."""


class QueryError(DnsServerError):
    """A query we do not answer normally; ``rcode`` None means drop it silently."""

    rcode: Rcode | None = None

    def __init__(self, reason: MalformedReason, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else str(reason))


class DroppedQuery(QueryError):
    """Too short to carry a header, or a response (QR=1): answering could loop or amplify."""


class FormatError(QueryError):
    rcode = Rcode.FORMERR


class NotImplementedOpcode(QueryError):
    rcode = Rcode.NOTIMP


class ZoneSyncError(DnsServerError):
    """The in-memory zone can no longer follow Redis incrementally: resync from a snapshot."""

    def __init__(self, reason: ResyncReason, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")
