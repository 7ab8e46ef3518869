"""The load generator's Prometheus metrics (base units; labels: ``outcome``, and the
endpoint's role where the endpoint is named)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from loadgen.outcome import DNS_OUTCOMES, Outcome
from services.core.launch import LaunchOutcome

_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

RESOLUTIONS = Counter(
    "dnsrace_client_resolutions", "Name resolutions made for requests (cache hits included)",
    ["outcome"],
)
REQUESTS = Counter("dnsrace_client_requests", "Requests completed, by outcome", ["outcome"])
ENDPOINT_REQUESTS = Counter(
    "dnsrace_client_endpoint_requests",
    "Requests completed, by the endpoint they asked (regional, fips, cell) and outcome",
    ["endpoint", "outcome"],
)
RESOLUTION_SECONDS = Histogram(
    "dnsrace_client_resolution_seconds", "Time to resolve the name for one request",
    buckets=_BUCKETS_S,
)
REQUEST_SECONDS = Histogram(
    "dnsrace_client_request_seconds",
    "Latency of a request from its intended send time to its completion (any outcome)",
    buckets=_BUCKETS_S,
)
DROPPED = Counter("dnsrace_client_dropped", "Arrivals not sent: too many requests in flight")
LATE = Counter("dnsrace_client_late", "Arrivals sent more than 10 ms after their intended time")
IN_FLIGHT = Gauge("dnsrace_client_in_flight", "Requests in flight")
TARGET_RATE = Gauge("dnsrace_client_target_requests_per_second",
                    "Intended request rate, requests per second")
DNS_QUERIES = Counter(
    "dnsrace_client_dns_queries", "DNS queries sent on the wire (cache misses)",
    ["transport", "outcome"],
)
DNS_BAD_RESPONSES = Counter(
    "dnsrace_client_dns_bad_responses",
    "DNS datagrams or answers ignored as undecodable or not matching the question",
)

for _outcome in Outcome:
    REQUESTS.labels(_outcome)
    for _endpoint in ("regional", "fips", "dualstack", "cell"):
        ENDPOINT_REQUESTS.labels(_endpoint, _outcome)
for _outcome in DNS_OUTCOMES:
    RESOLUTIONS.labels(_outcome)
    DNS_QUERIES.labels("udp", _outcome)
    DNS_QUERIES.labels("tcp", _outcome)
STALE_ANSWERS = Counter(
    "dnsrace_client_stale_answers",
    "DNS answers naming an older plan generation than one already seen for the name (I2)")

LAUNCHES = Counter("dnsrace_ec2_launches",
                   "Instance launches the load generator asked ec2_api for, by outcome",
                   ["outcome"])
for _launch in LaunchOutcome:
    LAUNCHES.labels(_launch.value)
LAUNCHES_PENDING = Gauge(
    "dnsrace_ec2_launches_pending",
    "Launches that failed and wait to be retried (DNSRACE_EC2_LAUNCH_RETRY_RATE)")

FLEET_CLIENTS = Gauge("dnsrace_client_fleet_clients",
                      "Virtual clients in this load generator's fleet (0: one shared cache)")
FLEET_FAILING = Gauge("dnsrace_client_fleet_failing",
                      "Virtual clients whose last request failed")
RETRIES = Counter("dnsrace_client_retries",
                  "Attempts repeated by the virtual clients' standard retry mode")
