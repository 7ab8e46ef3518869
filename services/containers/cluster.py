"""``dnsrace up --containers`` and ``demo --containers``: every Procfile process in a container.

:class:`ContainerCluster` is the :class:`~services.runtime.cluster.Cluster` harness whose
children are the engine's attached ``run`` clients (one per container, from the project
image), on the networks of :mod:`services.containers.plan`. A relay on the host's 127.0.0.1
makes each process answer on its usual port there, so that ``dnsrace status``, ``race``,
``watch``, the demo's monitor and the supervisor drive it unchanged.

Everything it makes carries the label ``dnsrace.containers=1``; every start and every stop
removes whatever carries it (:meth:`Engine.sweep`), so a crashed run leaves nothing for long.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.config import Settings
from services.containers.engine import Engine, EngineError, detect, network_args, run_args
from services.containers.plan import (
    DATAPLANE,
    DNS_PORT,
    STATE_DIR,
    Plan,
    address_of,
    plan,
)
from services.core import names
from services.isolate.relay import Relay, Route
from services.resources import procfile_text
from services.runtime.cluster import Cluster, ClusterError, cluster_env
from services.runtime.processes import terminate
from services.runtime.redis_server import port_answers

DEFAULT_IMAGE = "dnsrace"
START_TIMEOUT_S = 120.0
"""Containers start slower than processes: the floor of every wait for health."""


def host_routes(layout: Plan, settings: Settings) -> list[Route]:
    """The usual 127.0.0.1 ports of the host, to the containers that now serve them."""
    routes = []
    for container in layout.processes():
        address = address_of(layout, container)
        for serve in container.serves:
            if serve.port == DNS_PORT and container.name == "dns":
                routes.append(Route(settings.dns_port, address, DNS_PORT, udp=serve.udp))
            else:
                routes.append(Route(serve.port, address, serve.port, udp=serve.udp))
    return routes


@dataclass
class ContainerCluster(Cluster):
    """The cluster in containers; ``settings`` are what the host sees (its loopback ports)."""

    engine: Engine = field(default_factory=lambda: Engine("podman"))
    image: str = DEFAULT_IMAGE
    layout: Plan = field(default_factory=lambda: plan(Settings(), procfile_text()))
    relay: Relay | None = None

    @classmethod
    def create(cls, settings: Settings, log_dir: Path, image: str = DEFAULT_IMAGE,
               engine: str | None = None) -> ContainerCluster:
        if settings.redis_url:
            raise ClusterError("--containers runs its own Redis in a container; "
                               "unset DNSRACE_REDIS_URL")
        try:
            chosen = Engine(detect(engine))
        except EngineError as e:
            raise ClusterError(str(e)) from None
        if (problem := chosen.image_problem(image)) is not None:
            raise ClusterError(problem)
        inner = settings.replace(state_dir=STATE_DIR, dns_port=DNS_PORT)
        return cls(settings, cluster_env(inner), log_dir, engine=chosen, image=image,
                   layout=plan(settings, procfile_text()))

    def commands(self) -> dict[str, list[str]]:
        return {c.name: [self.engine.binary, *run_args(self.engine.kind, self.layout, c,
                                                         self.image, self.env)]
                for c in self.layout.processes()}

    def _prepare(self) -> None:
        """Networks, the data plane's namespace holder and the host relay (first start)."""
        self.check_ports_free()
        self.engine.sweep()
        try:
            for network in self.layout.networks:
                self.engine.run(*network_args(network))
            holder = self.layout.container(DATAPLANE)
            args = run_args(self.engine.kind, self.layout, holder, self.image, {})
            self.engine.run(args[0], "-d", *args[1:])
            self.relay = Relay(host_routes(self.layout, self.settings)).start()
        except (EngineError, OSError) as e:
            self.engine.sweep()
            raise ClusterError(f"cannot set up the container networks: {e}") from e

    def start(self, names: tuple[str, ...] | None = None) -> None:
        if self.relay is None:
            self._prepare()
            if names is None:  # Redis first: everybody else connects to it on start
                super().start(("redis",))
                self._wait_redis()
                names = tuple(n for n in self.commands() if n != "redis")
        names = tuple(self.commands()) if names is None else names
        if self.engine.kind == "docker":  # no --replace: a stopped run may still hold its name
            for name in names:
                self.engine.run("rm", "-f", self.layout.container(name).container_name,
                                check=False)
        super().start(names)

    def _wait_redis(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_answers(self.settings.redis_port):
            process = self.processes["redis"]
            if process.poll() is not None:
                raise ClusterError(f"redis's container exited with {process.returncode}; see "
                                   f"{self.log_dir / 'redis.log'}")
            if time.monotonic() > deadline:
                raise ClusterError(f"redis's container does not answer after "
                                   f"{START_TIMEOUT_S:.0f} s; see {self.log_dir / 'redis.log'}")
            time.sleep(0.2)

    def wait_healthy(self, timeout_s: float = 15.0, names: tuple[str, ...] | None = None) -> float:
        return super().wait_healthy(max(timeout_s, START_TIMEOUT_S), names)

    def kill(self, name: str) -> None:
        """SIGKILL inside the container, as a crash would; its client then exits too."""
        process = self.processes[name]
        if process.poll() is None:
            self.engine.run("kill", "-s", "KILL", self.layout.container(name).container_name,
                            check=False)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        """Stop every container (clients first, Redis last), remove them and the networks."""
        try:
            running = sorted(self.processes)
            clients = [n for n in running if n.startswith("loadgen")]
            last = [n for n in running if n == "redis"]
            services = [n for n in running if n not in clients and n not in last]
            for group in (clients, services, last):
                for name in group:
                    self._stopped.add(name)
                    process = self.processes[name]
                    if process.poll() is None:
                        process.terminate()  # the client passes SIGTERM to the container
                for name in group:
                    terminate(self.processes[name], 10.0)
        finally:
            self.engine.sweep()
            if self.relay is not None:
                self.relay.stop()
                self.relay = None

    def exec_args(self, container: str, *command: str) -> list[str]:
        return self.engine.exec_args(container, *command)

    def describe(self) -> str:
        lines = [f"  {'container':<22} {'networks':<44} process"]
        for c in self.layout.containers:
            where = (", ".join(f"{n} {a}" for n, a in c.networks) or f"(shares {c.joins}'s)")
            lines.append(f"  {c.container_name:<22} {where[:44]:<44} {' '.join(c.args)}")
        enactor = self.layout.container("enactor_az1")
        s = self.settings
        lines += [
            "",
            f"From this shell every service answers on its usual 127.0.0.1 port (relayed): Redis "
            f"{s.redis_port}, DNS {s.dns_port}, control {s.control_port}, /metrics from "
            f"{s.metrics_port_base}; so 'dnsrace status', 'race', 'watch', 'fault' work as ever.",
            f"Inside a container, tools resolve through our DNS (resolv.conf names {enactor.dns} "
            "in use1-az1):",
            "  " + " ".join(self.exec_args("enactor_az1", "dig", names.REGIONAL)),
            "Cut an AZ off from Redis and DNS: "
            "dnsrace fault add az_partition use1-az1 --duration 10",
            f"Logs in {self.log_dir}. Ctrl-C stops and removes every container and network.",
        ]
        return "\n".join(lines)

