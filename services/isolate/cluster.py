"""``dnsrace up --isolate``: the cluster with one network namespace per AZ and one for the region.

:class:`IsolatedCluster` is the :class:`~services.runtime.cluster.Cluster` harness with every
process started inside its node's namespace (``ip netns exec``), Redis and DNS reached over the
bridge by their 198.18 addresses, and a relay that makes each process answer on its usual port
of the host's 127.0.0.1, so that the same tools, monitor and tests drive it. Its ``stop`` ends every
process and removes every namespace, link and file it made (:func:`netns.teardown`,
which also runs before every start, in case an earlier run crashed).

``python -m services.isolate.cluster node NAME`` runs one node's processes in the foreground: the
command of the containers in ``docker-compose.yml``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from services import config
from services.config import Settings
from services.core import names
from services.isolate.relay import Relay, Route
from services.runtime import netns
from services.runtime.cluster import REPO, Cluster, ClusterError, cluster_env, healthy
from services.runtime.redis_server import port_answers, server_args
from services.runtime.topology import (
    DNS_PORT,
    REDIS_ADDRESS,
    REGIONAL_ADDRESS,
    Placement,
    Process,
    Topology,
    inner_settings,
    outer_settings,
    topology,
)

STOP_ORDER_LAST = "redis"


def command(process: Process, inner: Settings) -> list[str]:
    """How one process of the topology starts (inside its node)."""
    if process.name == "redis":
        args = server_args(inner.redis_port, Path(inner.state_dir) / "redis")
        args[args.index("--bind") + 1] = REDIS_ADDRESS
        # Bound to the isolated address only; protected mode would refuse the AZs.
        args[args.index("--protected-mode") + 1] = "no"
        return args
    return [sys.executable, "-m", "services.tools.cli", *process.args]


def host_routes(topo: Topology, settings: Settings) -> list[Route]:
    """The relay on the host: every usual 127.0.0.1 port, to where it now lives."""
    routes = [
        Route(settings.redis_port, REDIS_ADDRESS, settings.redis_port),
        Route(settings.dns_port, REGIONAL_ADDRESS, DNS_PORT),
        Route(settings.dns_port, REGIONAL_ADDRESS, DNS_PORT, udp=True),
    ]
    for process in topo.processes:
        if process.metrics_port is not None and process.host_port is not None:
            namespace = topo.node(process.node).namespace
            routes.append(Route(process.host_port, "127.0.0.1", process.metrics_port,
                                namespace))
    return routes


def node_routes(topo: Topology, node: str) -> list[Route]:
    """The relay in a container: each process's loopback /metrics on the node's address."""
    address = topo.node(node).address
    return [Route(p.metrics_port, "127.0.0.1", p.metrics_port, listen_host=address)
            for p in topo.on(node) if p.metrics_port is not None and p.name != "control"]


@dataclass
class IsolatedCluster(Cluster):
    """The cluster in network namespaces; ``settings`` are what the host sees (loopback)."""

    topo: Topology = field(default_factory=lambda: topology(Settings()))
    inner: Settings = field(default_factory=Settings)
    relay: Relay | None = None

    @classmethod
    def create(cls, settings: Settings, log_dir: Path,
               only: tuple[str, ...] | None = None) -> IsolatedCluster:
        if settings.redis_url:
            raise ClusterError("--isolate runs its own Redis in the regional namespace; "
                               "unset DNSRACE_REDIS_URL")
        outer = outer_settings(settings)
        inner = inner_settings(outer)
        return cls(outer, cluster_env(inner), log_dir, only, topo=topology(outer), inner=inner)

    def commands(self) -> dict[str, list[str]]:
        commands = {}
        for process in self.topo.processes:
            if self.only is None or process.name in self.only:
                namespace = self.topo.node(process.node).namespace
                commands[process.name] = ["ip", "netns", "exec", namespace,
                                          *command(process, self.inner)]
        return commands

    def ports(self) -> dict[int, str]:
        """The host's 127.0.0.1 ports the relay takes, with the process behind each."""
        ports = {self.settings.redis_port: "redis", self.settings.dns_port: "dns"}
        for process in self.topo.processes:
            if process.host_port is not None:
                ports[process.host_port] = process.name
        return ports

    def start(self, names: tuple[str, ...] | None = None) -> None:
        """Make the namespaces and the relay (first time), then start the processes."""
        if self.relay is None:
            self.check_ports_free()
            (Path(self.inner.state_dir) / "redis").mkdir(parents=True, exist_ok=True)
            netns.setup(self.topo)
            try:
                self.relay = Relay(host_routes(self.topo, self.settings)).start()
            except OSError as e:
                netns.teardown()
                raise ClusterError(f"cannot relay the usual ports on 127.0.0.1 ({e}); is "
                                   "another cluster running?") from e
        # Named explicitly: the ports are checked above, and now the relay holds them.
        super().start(names if names is not None else tuple(self.commands()))

    def health(self, name: str) -> bool:
        process = self.topo.process(name)
        if process.host_port is None:
            return port_answers(self.settings.redis_port)
        return healthy(f"http://127.0.0.1:{process.host_port}/healthz")

    def _stop_together(self, names: list[str]) -> None:
        for name in names:  # all of them at once, then wait for each (stop_one)
            with contextlib.suppress(ProcessLookupError):
                self.signal(name, signal.SIGCONT)
                self.signal(name, signal.SIGTERM)
        for name in names:
            self.stop_one(name)

    def stop(self) -> None:
        """Stop every process, the relay, and remove every namespace, link and file.

        Clients first, then the services together, Redis last (as :meth:`Cluster.stop`).
        """
        try:
            running = sorted(self.processes)
            clients = [n for n in running if n.startswith("loadgen")]
            services = [n for n in running if n not in clients and n != STOP_ORDER_LAST]
            for group in (clients, services, [n for n in running if n == STOP_ORDER_LAST]):
                self._stop_together(group)
        finally:
            if self.relay is not None:
                self.relay.stop()
                self.relay = None
            netns.teardown()

    def exited(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.poll() is not None]


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt, also when started with SIGINT ignored
    (a background job), so that every way of stopping removes the namespaces."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_undisturbed(cluster: IsolatedCluster) -> None:
    """Stop and tear down; a second Ctrl-C meanwhile would only leave things half removed."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM,
                                                                    signal.SIGINT)}
    try:
        cluster.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_for_any_exit(processes: list[subprocess.Popen[bytes]]) -> None:
    """Block until one child exits (without reaping it: Popen keeps its status)."""
    while not any(p.poll() is not None for p in processes):
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)


def describe(cluster: IsolatedCluster) -> str:
    topo = cluster.topo
    lines = [f"  {'node':<9} {'namespace':<17} {'address':<12} processes"]
    for node in topo.nodes:
        procs = ", ".join(p.name for p in topo.on(node.name))
        lines.append(f"  {node.name:<9} {node.namespace:<17} {node.address:<12} {procs}")
        if node.extra_addresses:
            lines.append(f"  {'':<40} also answers for {', '.join(node.extra_addresses)}")
    s = cluster.settings
    lines += [
        "",
        f"From this shell every service answers on its usual 127.0.0.1 port (relayed): Redis "
        f"{s.redis_port}, DNS {s.dns_port}, control {s.control_port}, /metrics from "
        f"{s.metrics_port_base}; so 'dnsrace status', 'race', 'watch', 'fault' work as ever.",
        f"Inside an AZ, unmodified tools resolve through the cluster's DNS "
        f"({REGIONAL_ADDRESS}:53):",
        f"  ip netns exec {topo.az_node('use1-az1').namespace} dig {names.REGIONAL}",
        "Cut an AZ off from the regional services: "
        "dnsrace fault add az_partition use1-az1 --duration 10",
        f"Logs in {cluster.log_dir}. Ctrl-C stops everything and removes the namespaces.",
    ]
    return "\n".join(lines)


def run_node(name: str, placement: Placement = "compose") -> int:
    """One node's processes in the foreground, as a container runs them (see the compose file).

    Adds the node's extra addresses (the AZ's load balancers) to eth0 when missing (the
    container needs NET_ADMIN), relays each process's loopback /metrics to the node's address
    for Prometheus, and stops everything when one process exits or on SIGTERM.
    """
    settings = config.load()
    topo = topology(settings)
    node = topo.node(name)
    present = netns.ip("-o", "addr", "show", "dev", "eth0")
    for address in node.extra_addresses:
        if f" {address}/" not in present:
            netns.ip("addr", "add", f"{address}/32", "dev", "eth0")
    env = dict(os.environ)
    children: dict[str, subprocess.Popen[bytes]] = {}
    with _stop_signals_interrupt(), Relay(node_routes(topo, name)):
        try:
            for process in topo.on(name):
                if process.name == "redis" and placement == "compose":
                    continue  # Redis has a container of its own
                children[process.name] = subprocess.Popen(command(process, settings),
                                                          env=env, cwd=REPO)
            _wait_for_any_exit(list(children.values()))
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            for child in children.values():
                child.terminate()
            for child in children.values():
                child.wait()


USAGE = """usage: python -m services.isolate.cluster node NAME | teardown
  node NAME  run one node's processes in the foreground (a container's command);
             NAME is regional, use1-az1, use1-az2 or use1-az4
  teardown   remove every namespace, link, /etc/netns entry and process that
             'dnsrace up --isolate' left behind (it also does so itself on every start)"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["teardown"]:
        try:
            netns.require_root()
            removed = netns.teardown()
        except netns.IsolationError as e:
            print(f"teardown: {e}", file=sys.stderr)
            return 1
        print("\n".join(f"removed {item}" for item in removed) or "nothing to remove")
        return 0
    if len(args) != 2 or args[0] != "node":
        print(USAGE, file=sys.stderr)
        return 2
    return run_node(args[1])


if __name__ == "__main__":
    sys.exit(main())
