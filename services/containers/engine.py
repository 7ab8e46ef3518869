"""The container engine (podman, or docker where podman is missing) and the commands it takes.

Command building is pure (:func:`run_args`, :func:`network_args`); :class:`Engine` runs them.
podman is the one tried here (4.3, rootful, runc, netavark); docker takes the same commands
except for a container's networks, for which it wants ``--network name=N,ip=A,mac-address=M``
(Docker 25+).
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from services.containers.plan import (
    LABEL,
    PREFIX,
    PROCESS_LABEL,
    Container,
    Network,
    Plan,
    address_of,
    mac_of,
)
from services.errors import DnsraceError

log = logging.getLogger(__name__)
Kind = Literal["podman", "docker"]
ENTRY = ("python", "-m", "services.containers.entry")
ULIMIT_CAP = 4096


class EngineError(DnsraceError, RuntimeError):
    """The engine is missing or refused a command; the message says which and why."""


def detect(wanted: str | None = None) -> Kind:
    """podman if installed (or the one asked for), else docker; EngineError if neither."""
    for kind in ((wanted,) if wanted else ("podman", "docker")):
        if kind in ("podman", "docker") and shutil.which(kind):
            return kind  # type: ignore[return-value]
    raise EngineError(f"{wanted or 'neither podman nor docker'} is not installed: "
                      "'apt-get install podman runc netavark' (or install docker) and build the "
                      "image first (docs/containers.md)")


def ulimits() -> list[str]:
    """``--ulimit`` at or below the current limits (they cannot always be raised)."""
    nofile = min(*resource.getrlimit(resource.RLIMIT_NOFILE), ULIMIT_CAP)
    nproc = min(*resource.getrlimit(resource.RLIMIT_NPROC), ULIMIT_CAP)
    return [f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"]


def network_args(network: Network) -> list[str]:
    return ["network", "create", "--label", f"{LABEL}=1", "--opt", "isolate=true",
            "--subnet", network.subnet, "--gateway", network.gateway, network.name]


def _network_flag(kind: Kind, name: str, address: str) -> str:
    mac = mac_of(address)
    return (f"--network={name}:ip={address},mac={mac}" if kind == "podman"
            else f"--network=name={name},ip={address},mac-address={mac}")


def run_args(kind: Kind, plan: Plan, container: Container, image: str,
             env: Mapping[str, str]) -> list[str]:
    """``run`` for one container, attached (the cluster keeps the client as its child)."""
    args = ["run", "--rm", "--name", container.container_name, "--label", f"{LABEL}=1",
            "--label", f"{PROCESS_LABEL}={container.name}", "--no-healthcheck",
            "--stop-timeout", "8", *ulimits()]
    if kind == "podman":
        args.append("--replace")
    if container.joins is not None:
        args.append(f"--network=container:{container.joins}")
    for name, address in container.networks:
        args.append(_network_flag(kind, name, address))
    if container.dns is not None:
        args += ["--dns", container.dns]
    if container.low_ports:
        args += ["--sysctl", "net.ipv4.ip_unprivileged_port_start=0"]
    for key, value in sorted({**env, **container.env}.items()):
        args += ["-e", f"{key}={value}"]
    if container.name == "dataplane" or not container.serves:
        return [*args, image, *container.args]
    entry = [*ENTRY, "--address", address_of(plan, container)]
    for extra in container.addresses[1:]:
        entry += ["--address", extra]
    for serve in container.serves:
        entry += ["--serve", serve.render()]
    return [*args, image, *entry, "--", *container.args]


@dataclass(frozen=True)
class Engine:
    kind: Kind

    @property
    def binary(self) -> str:
        return self.kind

    def run(self, *args: str, timeout_s: float = 60.0, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run([self.kind, *args], capture_output=True, text=True,
                                  timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise EngineError(f"{self.kind} {' '.join(args[:3])} took over {timeout_s:.0f} s"
                              ) from e
        if check and done.returncode != 0:
            raise EngineError(f"{self.kind} {' '.join(args[:4])}: "
                              f"{done.stderr.strip().splitlines()[-1:] or done.returncode}")
        return done

    def image_problem(self, image: str) -> str | None:
        """Why ``image`` cannot be run (missing, or the engine does not answer), or None."""
        done = self.run("image", "inspect", image, check=False)
        if done.returncode == 0:
            return None
        said = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        return (f"{self.kind} has no image {image!r} ({said}): build it first "
                f"('{self.kind} build -t {image} .' in the checkout; with no registry: "
                "docs/containers.md), or name another with --image")

    def sweep(self) -> list[str]:
        """Remove every container and network labelled ours (left by a crash, or ours now)."""
        names = self.run("ps", "-a", "-q", "--filter", f"label={LABEL}=1",
                         "--format", "{{.Names}}", check=False).stdout.split()
        if names:
            self.run("rm", "-f", "-t", "2", *names, check=False, timeout_s=120)
        nets = self.run("network", "ls", "-q", "--filter", f"label={LABEL}=1",
                        "--format", "{{.Name}}", check=False).stdout.split()
        for net in nets:
            self.run("network", "rm", net, check=False)  # no -f: never what is not ours
        return names + nets

    def exec_args(self, container: str, *command: str) -> list[str]:
        return [self.kind, "exec", PREFIX + container, *command]

    def networks_of(self, container: Container) -> set[str]:
        done = self.run("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                        container.container_name)
        return set(json.loads(done.stdout or "{}") or {})

    def disconnect(self, network: str, container: Container) -> None:
        """Take the container off the network (nothing to do if it is off already)."""
        if network in self.networks_of(container):
            self.run("network", "disconnect", network, container.container_name)

    def connect(self, network: str, container: Container) -> None:
        """Put it back at its address (nothing to do if it is on already): a retry after a
        half-done heal must not stop at the container that made it."""
        if network not in self.networks_of(container):
            address = container.address_on(network)
            at = ["--ip", address, "--mac-address", mac_of(address)] if address else []
            self.run("network", "connect", *at, network, container.container_name)
