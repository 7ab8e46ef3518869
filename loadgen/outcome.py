"""What became of one resolution or one request: the bounded ``outcome`` label."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    OK = "ok"
    DNS_NODATA = "dns_nodata"
    """NOERROR with no address: the October 2025 symptom."""
    DNS_NXDOMAIN = "dns_nxdomain"
    DNS_TIMEOUT = "dns_timeout"
    """No answer in time, or no server could be reached."""
    DNS_SERVFAIL = "dns_servfail"
    """SERVFAIL, REFUSED, any other error rcode, or an unusable answer."""
    CONNECT_ERROR = "connect_error"
    HTTP_ERROR = "http_error"
    """The load balancer answered with a non-200 status, or broke the exchange."""
    TIMEOUT = "timeout"
    """The load balancer did not answer in time."""


DNS_OUTCOMES: tuple[Outcome, ...] = (
    Outcome.OK, Outcome.DNS_NODATA, Outcome.DNS_NXDOMAIN, Outcome.DNS_TIMEOUT, Outcome.DNS_SERVFAIL,
)
