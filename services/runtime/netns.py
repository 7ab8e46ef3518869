"""Network namespaces for ``--isolate``: build them from the topology, cut and heal, tear down.

Everything here is plain ``ip`` (iproute2): no netfilter tool is needed, since neither ``nft``
nor ``iptables`` can be assumed. One bridge on the host (``dnsrace-br0``, 198.18.0.1) and one
veth pair per node; every node's address is on the same /16, so nodes find each other (and the
load-balancer addresses an AZ answers for) by ARP.

An **AZ partition** pins, on each side, the neighbour entries of the other side's addresses to
a MAC no node has: frames are still sent but nobody takes them, so TCP and UDP see silence (as
through a cut link, not a refusal), and only between that AZ and the regional node: the AZ
still reaches the other AZs, and the host still reaches everything. Healing deletes the pinned
entries; ARP re-learns the real ones on the next packet.

:func:`teardown` finds everything by name prefix (namespaces, host links, /etc/netns entries,
and every process still inside a namespace), so it also cleans up after a crash; it is
idempotent and run before every setup.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from services.config import Settings
from services.core.names import AZS
from services.errors import DnsraceError
from services.runtime.topology import (
    BRIDGE,
    DEAD_MAC,
    GATEWAY,
    INNER_INTERFACE,
    NAME_PREFIX,
    PREFIX_LENGTH,
    REGIONAL_ADDRESS,
    Node,
    Topology,
    topology,
)

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")


class IsolationError(DnsraceError, OSError):
    """Namespaces could not be made, changed or removed; the message says why and what to do."""


def require_root() -> None:
    """Raise IsolationError unless this process can create network namespaces."""
    if os.geteuid() != 0:
        raise IsolationError(
            "--isolate creates network namespaces, a bridge and veth pairs, which needs root: "
            "run it as root (e.g. 'sudo .venv/bin/dnsrace up --isolate')")
    if shutil.which("ip") is None:
        raise IsolationError("--isolate needs iproute2's 'ip' command (apt-get install iproute2)")


def ip(*args: str, ok_missing: bool = False) -> str:
    """Run ``ip ARGS``; IsolationError with its message if it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        error = result.stderr.strip()
        if ok_missing and ("No such" in error or "Cannot find" in error
                           or "does not exist" in error):
            return ""
        raise IsolationError(f"ip {' '.join(args)}: {error or 'failed'}")
    return result.stdout


def namespaces() -> list[str]:
    """Every network namespace whose name starts with ``dnsrace-``."""
    out = ip("netns", "list")
    found = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in found if n.startswith(NAME_PREFIX))


def host_links() -> list[str]:
    """Every link of the host namespace whose name starts with ``dnsrace-``."""
    names = []
    for line in ip("-o", "link", "show").splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(NAME_PREFIX):
            names.append(name)
    return sorted(names)


def resolv_dirs() -> list[Path]:
    if not ETC_NETNS.is_dir():
        return []
    return sorted(p for p in ETC_NETNS.iterdir() if p.name.startswith(NAME_PREFIX))


def namespace_pids(namespace: str) -> list[int]:
    out = ip("netns", "pids", namespace, ok_missing=True)
    return [int(pid) for pid in out.split() if pid.isdigit()]


def leftovers() -> list[str]:
    """What isolation has left on this machine (empty once torn down)."""
    found = [f"namespace {n}" for n in namespaces()]
    found += [f"link {n}" for n in host_links()]
    found += [f"directory {p}" for p in resolv_dirs()]
    for namespace in namespaces():
        found += [f"process {pid} in {namespace}" for pid in namespace_pids(namespace)]
    return found


def _end_processes(pids: list[int], timeout_s: float) -> None:
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if process_alive(pid)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        log.warning("process %d did not stop on SIGTERM; killed", pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of ours that exited is a zombie until reaped: not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def teardown(timeout_s: float = 3.0) -> list[str]:
    """Remove every process, namespace, link and /etc/netns entry isolation made; say what."""
    removed: list[str] = []
    found = namespaces()
    pids = {ns: namespace_pids(ns) for ns in found}
    _end_processes([pid for group in pids.values() for pid in group], timeout_s)
    for namespace in found:
        removed += [f"process {pid} in {namespace}" for pid in pids[namespace]]
        ip("netns", "delete", namespace, ok_missing=True)
        removed.append(f"namespace {namespace}")
    # Deleting a namespace deletes the veth pairs with an end inside it; the bridge stays.
    for link in host_links():
        ip("link", "delete", link, ok_missing=True)
        removed.append(f"link {link}")
    for path in resolv_dirs():
        shutil.rmtree(path, ignore_errors=True)
        removed.append(f"directory {path}")
    return removed


def resolv_conf(dns_address: str) -> str:
    return (f"# written by dnsrace --isolate: the cluster's own DNS server\n"
            f"nameserver {dns_address}\noptions timeout:1 attempts:2\n")


def _node(node: Node) -> None:
    ns, host_end = node.namespace, node.host_interface
    ip("netns", "add", ns)
    ip("-n", ns, "link", "set", "lo", "up")
    ip("link", "add", host_end, "type", "veth", "peer", "name", INNER_INTERFACE, "netns", ns)
    ip("link", "set", host_end, "addrgenmode", "none", "master", BRIDGE, "up")
    # No IPv6 link-local addresses: the namespaces speak only on their 198.18 addresses.
    ip("-n", ns, "link", "set", INNER_INTERFACE, "address", node.mac, "addrgenmode", "none")
    ip("-n", ns, "addr", "add", f"{node.address}/{PREFIX_LENGTH}", "dev", INNER_INTERFACE)
    for extra in node.extra_addresses:
        ip("-n", ns, "addr", "add", f"{extra}/32", "dev", INNER_INTERFACE)
    ip("-n", ns, "link", "set", INNER_INTERFACE, "up")
    etc = ETC_NETNS / ns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(resolv_conf(REGIONAL_ADDRESS))


def setup(topo: Topology) -> None:
    """Tear down leftovers, then make the bridge and one namespace per node of ``topo``."""
    require_root()
    teardown()
    try:
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("link", "set", BRIDGE, "addrgenmode", "none")
        ip("addr", "add", f"{GATEWAY}/{PREFIX_LENGTH}", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for node in topo.nodes:
            _node(node)
    except IsolationError:
        teardown()
        raise


def available(az: str) -> bool:
    """Is there an isolated cluster whose AZ ``az`` can be partitioned?"""
    return (NETNS_DIR / (NAME_PREFIX + az)).exists() and (
        NETNS_DIR / (NAME_PREFIX + "regional")).exists()


def partition_commands(topo: Topology, az: str, cut: bool) -> list[list[str]]:
    """The ``ip`` commands that cut (or heal) AZ ``az`` off from the regional node."""
    node, regional = topo.az_node(az), topo.regional
    sides = ((node, regional.addresses), (regional, node.addresses))
    commands = []
    for here, others in sides:
        for address in others:
            if cut:
                commands.append(["-n", here.namespace, "neigh", "replace", address, "lladdr",
                                 DEAD_MAC, "nud", "permanent", "dev", INNER_INTERFACE])
            else:
                commands.append(["-n", here.namespace, "neigh", "flush", "to", address,
                                 "nud", "permanent", "dev", INNER_INTERFACE])
    return commands


def set_partition(settings: Settings, target: str, cut: bool) -> None:
    """Cut (or heal) one AZ, or ``all``, off from the regional services."""
    azs = AZS if target == "all" else (target,)
    topo = topology(settings)
    for az in azs:
        if not available(az):
            raise IsolationError(f"no isolated cluster: namespace {NAME_PREFIX}{az} is missing "
                                 "(az_partition needs 'dnsrace up --isolate')")
        for command in partition_commands(topo, az, cut):
            ip(*command)
        log.warning("%s %s %s the regional services", "cut" if cut else "healed", az,
                    "off from" if cut else "with")


async def partition(settings: Settings, target: str, cut: bool) -> None:
    """:func:`set_partition` for the control service's event loop."""
    await asyncio.to_thread(set_partition, settings, target, cut)
