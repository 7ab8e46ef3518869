"""The root of every exception dnsrace raises: ``except DnsraceError`` catches ours, and only ours.

It lives here, below every layer (``services.config`` included, which may import nothing of the
project but this), and imports nothing. Each error below it carries its meaning where it is
defined: a DNS rcode (``dns_server.errors``), a metric ``reason`` (``services.core.records``),
the fix in its message (``services.config.ConfigError``). Where callers relied on a builtin
base (``ConfigError`` is a ``ValueError``, ``IsolationError`` an ``OSError``), the error keeps
it by multiple inheritance.
"""

from __future__ import annotations


class DnsraceError(Exception):
    """Base of every exception the dnsrace packages define (services, dns_server, loadgen)."""
