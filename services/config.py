"""One typed configuration for every dnsrace process.

Settings come from environment variables named ``DNSRACE_<FIELD>`` (honcho passes a ``.env``
file through the environment, so both work).  An unknown ``DNSRACE_*`` name is an error, not
a silent no-op: a typo in a game-day config must not quietly run the default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from services.errors import DnsraceError

Mode = Literal["legacy", "safe"]
DnsProtection = Literal["fenced_commit", "safe_cleanup", "plan_validation", "self_repair"]
"""The protections of the DNS automation (DESIGN.md section 4)."""
CascadeProtection = Literal["queue_throttle", "velocity_control"]
"""The protections of what depends on the name (DESIGN.md section 8): EC2's DWFM and Network
Manager queues (queue_throttle), NLB AZ failover (velocity_control, issue 15)."""
Protection = Literal[DnsProtection, CascadeProtection]
ALL_PROTECTIONS: tuple[Protection, ...] = typing.get_args(Protection)
DNS_PROTECTIONS: tuple[DnsProtection, ...] = typing.get_args(DnsProtection)
PREFIX = "DNSRACE_"

ISOLATION_RANGE = ipaddress.ip_network("198.18.0.0/15")
"""The benchmarking range (RFC 2544) from which ``--isolate`` addresses its network namespaces:
besides loopback, the only addresses a dnsrace process may listen on or send to."""


class ConfigError(DnsraceError, ValueError):
    """A setting is unknown or has a value that cannot be used; the message says how to fix it."""


def _doc(text: str, **kwargs: typing.Any) -> typing.Any:
    return field(metadata={"doc": text}, **kwargs)


@dataclass(frozen=True)
class Settings:
    """Every setting of the cluster. Units are in the names (``_s`` seconds, ``_port``)."""

    redis_url: str = _doc("Redis to use; empty means the embedded server on redis_port", default="")
    redis_port: int = _doc("port of the embedded Redis on 127.0.0.1", default=6390)
    dns_host: str = _doc("address the authoritative DNS server listens on", default="127.0.0.1")
    dns_port: int = _doc("UDP and TCP port of the authoritative DNS server", default=5300)
    dns_udp_batch: int = _doc(
        "UDP queries the DNS server takes per recvmmsg system call (0: one per call through "
        "the asyncio transport, also where recvmmsg is missing)", default=64)
    dns_fast_path: bool = _doc(
        "answer UDP queries whose reply is prepared on a C thread (dns_server._fastpath, "
        "where it was built at install); off: every query through the Python engine",
        default=True)
    dns_cache_entries: int = _doc(
        "replies the DNS server caches before it starts its reply cache afresh (1: every "
        "query resolved anew, how the benchmarks measure the cache-miss path)", default=50_000)
    control_host: str = _doc("address of the control service; not loopback needs a token",
                             default="127.0.0.1")
    control_port: int = _doc("HTTP port of the control service (fault API)", default=8600)
    control_token: str = _doc("bearer token required for changes (always off-loopback)",
                              default="")
    metrics_port_base: int = _doc(
        "first /metrics port; planner +0, enactors +1..+3, dns +4, endpoints +5, loadgen +6.., "
        "DWFM hosts +12.., ec2_api +16, netmgr +17, nlb +18, resolver +19, supervisor +20, "
        "instances +21..+23, service_load +24",
        default=9510,
    )
    plan_interval_s: float = _doc("seconds between two plans written by the planner", default=1.0)
    cells: int = _doc("number of account-cell endpoints besides the named ones", default=20)
    mode: Mode = _doc("enactor algorithm: legacy (2025 behaviour) or safe", default="legacy")
    protections: tuple[Protection, ...] = _doc(
        "protections on in safe mode (comma separated); empty in safe mode means all",
        default=(),
    )
    cleanup_age: int = _doc("clean-up deletes trees this many generations older", default=5)
    keep_newest: int = _doc("safe clean-up always keeps this many newest trees", default=3)
    lock_lease_s: float = _doc("how long an endpoint lock is held after it is taken", default=1.0)
    backoff_base_s: float = _doc("first back-off after losing a lock", default=0.05)
    backoff_max_s: float = _doc("longest back-off after losing a lock", default=1.0)
    enactor_window: int = _doc(
        "endpoints an enactor reads, then commits, per pipelined round-trip (1: one at a time)",
        default=512,
    )
    max_capacity_drop: float = _doc(
        "plan validation refuses a plan removing more than this fraction of capacity",
        default=0.5,
    )
    lb_count: int = _doc("load balancers in the fleet, spread over the three AZs", default=12)
    lb_port: int = _doc("HTTP port every load balancer listens on (each its own address)",
                        default=8000)
    lb_network: str = _doc("first three octets of the load balancers' addresses (127.x.y, or "
                           "198.18.x / 198.19.x under --isolate)", default="127.0.10")
    ttl_s: int = _doc("TTL of the A records served for endpoint names", default=5)
    negative_ttl_s: int = _doc("SOA minimum: how long resolvers cache an empty answer", default=5)
    load_rate: float = _doc("load generator: requests per second", default=200.0)
    load_duration_s: float = _doc("load generator: stop after this long (0: until stopped)",
                                  default=0.0)
    load_ramp_s: float = _doc("load generator: seconds to ramp up to load_rate", default=2.0)
    load_max_in_flight: int = _doc("load generator: requests in flight at most", default=500)
    resolver: str = _doc("the clients' resolver: stub (each client asks our server) or unbound "
                         "(a real caching resolver in between)", default="stub")
    resolver_port: int = _doc("UDP/TCP port of Unbound on 127.0.0.1 (its control port is the "
                              "next one)", default=5310)
    load_clients: int = _doc("load generator: virtual clients, each with its own cache and "
                             "retries (0: one shared stub cache)", default=0)
    load_other_share: float = _doc(
        "load generator: share of requests sent to the FIPS endpoint and the account cells in "
        "turn; the rest ask the regional name", default=0.0)
    lb_max_in_flight: int = _doc(
        "requests one load balancer serves at once; more wait in its queue", default=32)
    lb_queue: int = _doc(
        "requests that may wait at one load balancer; beyond it the answer is "
        "ThrottlingException (400)", default=256)
    lb_service_s: float = _doc(
        "time one request holds a load balancer's slot (the storage behind it)", default=0.002)
    dwfm_hosts: int = _doc("DWFM hosts (Procfile dwfm_1, dwfm_2, ...)", default=2)
    dwfm_droplets: int = _doc("droplets each DWFM host owns, spread over the three AZs",
                              default=100)
    dwfm_workers: int = _doc("workers per DWFM host serving its queue of lease work", default=2)
    dwfm_deadline_s: float = _doc(
        "a lease work item must finish this long after it was queued, else the lease is void",
        default=2.0)
    dwfm_work_s: float = _doc(
        "droplet-side work of one lease (re-)establishment, besides its DynamoDB calls",
        default=0.15)
    dwfm_instance_work_s: float = _doc(
        "extra work per instance on the droplet when its lease is (re-)established",
        default=0.01)
    dwfm_check_interval_s: float = _doc("seconds between two state checks of a droplet",
                                        default=2.0)
    lease_ttl_s: float = _doc("a droplet lease expires this long after its last renewal",
                              default=8.0)
    ec2_launch_rate: float = _doc(
        "load generator: instance launches per second sent to ec2_api (0: none)", default=4.0)
    ec2_droplet_capacity: int = _doc("instances one droplet takes at most", default=16)
    ec2_netmgr_backlog_limit: int = _doc(
        "under queue_throttle, ec2_api answers RequestLimitExceeded while Network Manager's "
        "backlog (Redis dnsrace:netmgr:backlog) is longer than this", default=200)
    netmgr_rate_per_s: float = _doc(
        "Network Manager: network-state propagations finished per second", default=8.0)
    ec2_launch_retry_rate: float = _doc(
        "launch load: launches that failed stay pending and are retried at up to this many a "
        "second, as an auto-scaling group keeps asking for its desired capacity (0: never)",
        default=0.0)
    nlb_check_interval_s: float = _doc(
        "NLB: seconds between two rounds of health checks (each checks at most 64 targets)",
        default=1.0)
    nlb_failover_threshold: float = _doc(
        "NLB: automatic failover takes an AZ out of the name when fewer than this share of its "
        "targets are in service", default=0.5)
    velocity_max_share: float = _doc(
        "NLB, with velocity_control: failover removes at most this share of the AZs (at least "
        "one, never the last) within velocity_window_s; C3 judges every mode by it",
        default=1 / 3)
    velocity_window_s: float = _doc(
        "NLB: the window of velocity_max_share, in seconds", default=60.0)
    service_load_rate: float = _doc(
        "service_load: calls a second to the NLB's name (resolved through our DNS)",
        default=20.0)
    state_dir: str = _doc("where processes keep local state (planner high-water mark, logs)",
                          default=".dnsrace")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _doc("log level", default="INFO")
    log_json: bool = _doc("log one JSON object per line", default=False)
    load_rate_per_process: float = _doc(
        "load generator: requests/s one process is given; the cluster starts "
        "ceil(load_rate / this) copies (at most 6), splitting the rate and the clients",
        default=2000.0)

    def __post_init__(self) -> None:
        checks = [
            (self.plan_interval_s > 0, "DNSRACE_PLAN_INTERVAL_S must be > 0"),
            (self.cells >= 0, "DNSRACE_CELLS must be >= 0"),
            (self.cleanup_age >= 1, "DNSRACE_CLEANUP_AGE must be >= 1"),
            (self.keep_newest >= 1, "DNSRACE_KEEP_NEWEST must be >= 1"),
            (self.lock_lease_s > 0, "DNSRACE_LOCK_LEASE_S must be > 0"),
            (0 <= self.dns_udp_batch <= 1024, "DNSRACE_DNS_UDP_BATCH must be between 0 and 1024"),
            (self.dns_cache_entries >= 1, "DNSRACE_DNS_CACHE_ENTRIES must be >= 1"),
            (self.enactor_window >= 1, "DNSRACE_ENACTOR_WINDOW must be >= 1"),
            (0 < self.max_capacity_drop <= 1, "DNSRACE_MAX_CAPACITY_DROP must be in (0, 1]"),
            (3 <= self.lb_count <= 250, "DNSRACE_LB_COUNT must be between 3 and 250"),
            (self.ttl_s >= 0 and self.negative_ttl_s >= 0, "TTLs must be >= 0"),
            (self.load_rate >= 0, "DNSRACE_LOAD_RATE must be >= 0"),
            (self.load_rate_per_process > 0, "DNSRACE_LOAD_RATE_PER_PROCESS must be > 0"),
            (self.resolver in ("stub", "unbound"), "DNSRACE_RESOLVER must be stub or unbound"),
            (0 <= self.load_clients <= 100_000, "DNSRACE_LOAD_CLIENTS must be between 0 and "
                                                "100000"),
            (0 <= self.load_other_share <= 1, "DNSRACE_LOAD_OTHER_SHARE must be from 0 to 1"),
            (self.lb_max_in_flight >= 1 and self.lb_queue >= 0 and self.lb_service_s >= 0,
             "DNSRACE_LB_MAX_IN_FLIGHT must be >= 1, DNSRACE_LB_QUEUE and _SERVICE_S >= 0"),
            (1 <= self.dwfm_hosts <= 4, "DNSRACE_DWFM_HOSTS must be between 1 and 4"),
            (3 <= self.dwfm_droplets <= 2000, "DNSRACE_DWFM_DROPLETS must be between 3 and 2000"),
            (1 <= self.dwfm_workers <= 64, "DNSRACE_DWFM_WORKERS must be between 1 and 64"),
            (min(self.dwfm_deadline_s, self.dwfm_check_interval_s, self.lease_ttl_s) > 0
             and min(self.dwfm_work_s, self.dwfm_instance_work_s) >= 0,
             "DWFM deadline, check interval and lease TTL must be > 0, work times >= 0"),
            (self.lease_ttl_s > self.dwfm_check_interval_s,
             "DNSRACE_LEASE_TTL_S must exceed DNSRACE_DWFM_CHECK_INTERVAL_S (else every lease "
             "expires between two state checks)"),
            (self.ec2_launch_rate >= 0 and 1 <= self.ec2_droplet_capacity <= 1000
             and self.ec2_netmgr_backlog_limit >= 0 and self.netmgr_rate_per_s > 0,
             "DNSRACE_EC2_LAUNCH_RATE must be >= 0, DNSRACE_EC2_DROPLET_CAPACITY between 1 and "
             "1000, DNSRACE_EC2_NETMGR_BACKLOG_LIMIT >= 0, DNSRACE_NETMGR_RATE_PER_S > 0"),
            (0 <= self.ec2_launch_retry_rate <= 200 and 0 < self.service_load_rate <= 500
             and 0 <= self.nlb_failover_threshold <= 1 and 0 < self.nlb_check_interval_s <= 60,
             "DNSRACE_EC2_LAUNCH_RETRY_RATE must be between 0 and 200, "
             "DNSRACE_SERVICE_LOAD_RATE above 0 and at most 500, DNSRACE_NLB_FAILOVER_THRESHOLD "
             "between 0 and 1, DNSRACE_NLB_CHECK_INTERVAL_S above 0 and at most 60"),
            (0 < self.velocity_max_share <= 1 and self.velocity_window_s > 0,
             "DNSRACE_VELOCITY_MAX_SHARE must be above 0 and at most 1, "
             "DNSRACE_VELOCITY_WINDOW_S above 0"),
            (_lb_network_allowed(self.lb_network),
             "DNSRACE_LB_NETWORK must be three octets inside 127.0.0.0/8, or inside "
             "198.18.0.0/15 for --isolate"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def active_protections(self) -> frozenset[Protection]:
        """Protections in force: none in legacy mode; in safe mode the chosen ones, or all."""
        if self.mode == "legacy":
            return frozenset()
        return frozenset(self.protections or ALL_PROTECTIONS)

    def metrics_port(self, role: str, index: int = 0) -> int:
        offsets = {"planner": 0, "enactor": 1, "dns": 4, "endpoints": 5, "loadgen": 6,
                   "dwfm": 12, "ec2_api": 16, "netmgr": 17, "nlb": 18, "resolver": 19,
                   "supervisor": 20, "instances": 21, "service_load": 24}
        if role not in offsets:
            raise ConfigError(f"no metrics port for role {role!r}")
        return self.metrics_port_base + offsets[role] + index

    def replace(self, **changes: typing.Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _lb_network_allowed(prefix: str) -> bool:
    """Loopback, or the benchmarking range that ``--isolate`` gives its namespaces."""
    try:
        first = ipaddress.ip_address(f"{prefix}.1")
    except ValueError:
        return False
    return first.is_loopback or first in ISOLATION_RANGE


def _env_name(name: str) -> str:
    return PREFIX + name.upper()


def _parse(name: str, kind: typing.Any, raw: str) -> typing.Any:
    env = _env_name(name)
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is str:
            return raw
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a valid {kind.__name__}") from None
    if origin is Literal:
        choices = typing.get_args(kind)
        if raw not in choices:
            raise ConfigError(f"{env}={raw!r}: choose one of {', '.join(choices)}")
        return raw
    if origin is tuple:
        (item,) = typing.get_args(kind)[:1]
        choices = typing.get_args(item)
        values = tuple(part.strip() for part in raw.split(",") if part.strip())
        for value in values:
            if value not in choices:
                raise ConfigError(f"{env}: unknown {value!r}; choose from {', '.join(choices)}")
        return values
    raise ConfigError(f"{env}: unsupported setting type {kind!r}")  # pragma: no cover


def load(environ: Mapping[str, str] | None = None, **overrides: typing.Any) -> Settings:
    """Build Settings from the environment, rejecting unknown ``DNSRACE_*`` names."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(Settings)
    known = {_env_name(f.name): f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in known)
    if unknown:
        raise ConfigError(
            f"unknown setting {', '.join(unknown)}; known settings are listed by "
            "'dnsrace config' (names are DNSRACE_ + a field in upper case)"
        )
    values: dict[str, typing.Any] = {}
    for env, name in known.items():
        if env in environ:
            values[name] = _parse(name, hints[name], environ[env])
    values.update(overrides)
    return Settings(**values)


def describe() -> list[tuple[str, str, str]]:
    """(environment name, default, meaning) for every setting, for ``dnsrace config``."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append((_env_name(f.name), shown, f.metadata["doc"]))
    return rows
