"""Every Prometheus metric of the DNS server (default registry; bounded labels only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from dns_server.zone import Zone
from services.core import names


class Tally:
    """One series' count, kept in a plain attribute: ``tally.n += 1`` costs no lock."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0.0

    def inc(self, amount: float) -> None:
        self.n += amount

    def set(self, value: float) -> None:
        self.n = value

    def get(self) -> float:
        return self.n

    def set_exemplar(self, exemplar: Any) -> None:
        pass

    def get_exemplar(self) -> None:
        return None


BEFORE_COLLECT: list[Callable[[], None]] = []
"""Called before any :class:`HotCounter` is read: the compiled fast path adds the answers it
gave since the last read (``dns_server.fastpath``), so every exposition is up to date."""


class HotCounter(Counter):
    """A Counter for the per-query path: the hot path adds to :meth:`tally` directly.

    prometheus_client guards every value with a lock (0.6 us an increment, a quarter of a
    cached answer). The server answers queries and serves /metrics on one thread, its event
    loop, so a plain attribute is exact here; ``inc`` and the exposition work as for any
    Counter (the value object is the one ``Counter`` keeps in ``_value``).
    """

    def _metric_init(self) -> None:
        super()._metric_init()
        self._value = Tally()

    def tally(self) -> Tally:
        return self._value

    def collect(self) -> Any:
        for fold in BEFORE_COLLECT:
            fold()
        return super().collect()


QUERIES = HotCounter("dnsrace_dns_queries", "DNS queries answered, by response code and type",
                     ["rcode", "qtype"])
EMPTY_ANSWERS = HotCounter(
    "dnsrace_dns_empty_answers",
    "A queries for an endpoint whose alias names a missing or empty tree (NOERROR, no data)",
    ["endpoint"],
)
for _label in ("regional", "fips", "dualstack", "cell"):
    EMPTY_ANSWERS.labels(_label)  # a series from the start: 0 before any outage, not "no data"
ZONE_SERIAL = Gauge("dnsrace_dns_zone_serial", "Zone serial the server answers from")
GENERATION_SERVED = Gauge(
    "dnsrace_dns_generation_served",
    "Plan generation behind a named endpoint's answer (0 when the answer is empty)",
    ["endpoint"],
)
PROPAGATION = Histogram(
    "dnsrace_dns_propagation_seconds",
    "From a change batch's commit in Redis to the change being live in the server's memory",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
MALFORMED = Counter("dnsrace_dns_malformed", "Queries dropped or refused as malformed",
                    ["reason"])
RESYNCS = Counter("dnsrace_dns_resyncs", "Full zone reloads after losing track of changes",
                  ["reason"])
SYNC_ERRORS = Counter("dnsrace_dns_zone_sync_errors",
                      "Failed attempts to follow the zone in Redis (retried after a back-off)",
                      ["reason"])
BAD_RECORDS = Counter("dnsrace_dns_bad_records",
                      "Record sets in the zone that do not decode (served as absent)")
TCP_CONNECTIONS = Gauge("dnsrace_dns_tcp_connections", "Open TCP connections")
TCP_REJECTED = Counter("dnsrace_dns_tcp_rejected",
                       "TCP connections closed at once: the connection cap was reached")
TCP_IDLE_CLOSED = Counter("dnsrace_dns_tcp_idle_closed",
                          "TCP connections closed after the idle timeout")
INTERNAL_ERRORS = Counter("dnsrace_dns_internal_errors",
                          "Queries that hit a bug in the server (answered SERVFAIL)")

for _endpoint in names.NAMED_ENDPOINTS:
    GENERATION_SERVED.labels(names.endpoint_label(_endpoint)).set(0)


def observe_zone(zone: Zone) -> None:
    """Gauges that follow the zone: its serial and the generation behind each named endpoint."""
    ZONE_SERIAL.set(zone.serial)
    for endpoint in names.NAMED_ENDPOINTS:
        GENERATION_SERVED.labels(names.endpoint_label(endpoint)).set(served_generation(zone,
                                                                                       endpoint))


def served_generation(zone: Zone, endpoint: str) -> int:
    alias = zone.alias(endpoint)
    if alias is None:
        return 0
    tree = zone.addresses(alias.target)
    return alias.generation if tree is not None and tree.records else 0
