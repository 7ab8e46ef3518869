"""The DNS servers compared, each a child process on its own loopback port.

- ``ours``: ``python -m dns_server`` following the zone in Redis (as the cluster runs it);
- ``dnslib``: dnslib's built-in threaded ``DNSServer`` with a tiny resolver (same answers);
- ``floor-uvloop`` / ``floor-blocking``: the cheapest Python responder (``bench.floor_server``),
  what any Python server pays per query;
- ``nsd`` / ``knot``: the reference authoritative servers, from a zone file, configured in a
  temporary directory and run in the foreground (no system service).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.common import PYTHON, REPO, Child, require, wait_answering
from bench.zonedata import ExportedZone
from services.core import names
from services.runtime.ports import free_port, metrics_port_base


@dataclass
class DnsChild:
    """A running DNS server under test."""

    name: str
    port: int
    child: Child
    metrics_port: int | None = None

    @property
    def pid(self) -> int:
        return self.child.pid

    def stop(self) -> None:
        self.child.stop()


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(values)
    return env


def start_ours(work: Path, redis_url: str, probe: str = names.REGIONAL,
               timeout_s: float = 60.0, udp_batch: int | None = None,
               name: str = "ours", code: Path | None = None,
               cache_entries: int | None = None, fast_path: bool | None = None) -> DnsChild:
    """Our server, answering once its zone is loaded from Redis; ``udp_batch`` as
    DNSRACE_DNS_UDP_BATCH (0: the asyncio transport, a system call per datagram); ``code``:
    run the ``dns_server`` of another checkout (a baseline measured beside this one);
    ``cache_entries`` as DNSRACE_DNS_CACHE_ENTRIES (1: every query a reply-cache miss);
    ``fast_path`` as DNSRACE_DNS_FAST_PATH (False: every query answered in Python)."""
    port = free_port()
    metrics_base = metrics_port_base()
    env = _env(DNSRACE_REDIS_URL=redis_url, DNSRACE_DNS_PORT=str(port),
               DNSRACE_METRICS_PORT_BASE=str(metrics_base), DNSRACE_LOG_LEVEL="WARNING",
               DNSRACE_STATE_DIR=str(work / name))
    if udp_batch is not None:
        env["DNSRACE_DNS_UDP_BATCH"] = str(udp_batch)
    if cache_entries is not None:
        env["DNSRACE_DNS_CACHE_ENTRIES"] = str(cache_entries)
    if fast_path is not None:
        env["DNSRACE_DNS_FAST_PATH"] = "1" if fast_path else "0"
    child = Child(name, [PYTHON, "-m", "dns_server"], work / f"{name}.log", env=env,
                  cwd=code or REPO).start()
    wait_answering(port, probe, child, timeout_s)
    return DnsChild(name, port, child, metrics_base + 4)


def start_dnslib(work: Path, zone: ExportedZone) -> DnsChild:
    port = free_port()
    child = Child("dnslib", [PYTHON, "-m", "bench.dnslib_server", str(zone.answers_json),
                             str(port)], work / "dnslib.log", env=_env()).start()
    wait_answering(port, zone.names[0], child)
    return DnsChild("dnslib", port, child)


def start_floor(work: Path, zone: ExportedZone, mode: str) -> DnsChild:
    """``bench.floor_server`` in ``mode`` (``uvloop`` or ``blocking``), named ``floor-MODE``."""
    port = free_port()
    name = f"floor-{mode}"
    child = Child(name, [PYTHON, "-m", "bench.floor_server", mode, str(zone.answers_json),
                         str(port)], work / f"{name}.log", env=_env()).start()
    wait_answering(port, zone.names[0], child)
    return DnsChild(name, port, child)


def start_nsd(work: Path, zone: ExportedZone) -> DnsChild:
    """NSD 4 with one server process (as ours is one process), minimal responses, and no
    response rate limiting (Debian's NSD limits identical answers to 200/s per client subnet
    by default: the repeated regional name would be dropped, not answered)."""
    nsd = require("nsd")
    port = free_port()
    home = work / "nsd"
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "nsd.conf"
    conf.write_text(f"""server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    username: ""
    chroot: ""
    zonesdir: "{zone.zone_file.parent}"
    pidfile: "{home}/nsd.pid"
    database: ""
    zonelistfile: "{home}/zone.list"
    xfrdfile: "{home}/xfrd.state"
    xfrdir: "{home}"
    logfile: "{home}/nsd.log"
    server-count: 1
    verbosity: 0
    minimal-responses: yes
    refuse-any: yes
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "{names.ZONE}"
    zonefile: "{zone.zone_file.name}"
""")
    child = Child("nsd", [nsd, "-d", "-c", str(conf)], work / "nsd.log").start()
    wait_answering(port, zone.names[0], child)
    return DnsChild("nsd", port, child)


def start_knot(work: Path, zone: ExportedZone) -> DnsChild:
    """Knot DNS with one UDP worker (as ours is one thread)."""
    knotd = require("knotd")
    port = free_port()
    home = work / "knot"
    (home / "db").mkdir(parents=True, exist_ok=True)
    conf = home / "knot.conf"
    conf.write_text(f"""server:
    rundir: "{home}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "{home}/db"
template:
  - id: default
    storage: "{zone.zone_file.parent}"
    semantic-checks: off
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: {names.ZONE}
    file: "{zone.zone_file.name}"
""")
    child = Child("knot", [knotd, "-c", str(conf)], work / "knot.log").start()
    wait_answering(port, zone.names[0], child)
    return DnsChild("knot", port, child)
