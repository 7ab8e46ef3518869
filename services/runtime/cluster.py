"""Start, watch and stop the whole cluster as real OS processes, from the Procfile.

The Procfile is the one list of processes: ``honcho start`` runs it for people, and this
harness runs the same lines for the demo, the scenario runner and the whole-cluster tests,
with per-process logs, health checks with deadlines, and kill/restart/pause of one process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from honcho.environ import parse_procfile

from services.config import Settings
from services.core.names import AZS
from services.errors import DnsraceError
from services.resources import procfile_text
from services.runtime.load_split import copy_args, copy_name, loadgen_count
from services.runtime.processes import terminate, terminate_all
from services.runtime.redis_server import port_answers

REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 8.0
"""How long a process has to end on SIGTERM before it is killed."""


class ClusterError(DnsraceError, RuntimeError):
    pass


OUTAGE_PROCESSES = ("netmgr", "instances_az1", "instances_az2", "instances_az4", "nlb",
                    "service_load")
"""Issue 15's processes (Network Manager, instances, the NLB, its clients): in the Procfile for
``honcho start``, but started by this harness only when named in ``only=`` (``dnsrace outage``),
so the race-only runs and tests keep their process sets and their share of the 2 cores."""


def procfile_commands(path: Path | None = None, outage: bool = False) -> dict[str, list[str]]:
    """Procfile entries as argument lists; ``dnsrace`` runs through this interpreter.

    The packaged Procfile (services/resources.py) unless ``path`` names another; without
    ``outage``, the :data:`OUTAGE_PROCESSES` are left out."""
    parsed = parse_procfile(procfile_text() if path is None else path.read_text())
    commands = {}
    for name, process in parsed.processes.items():
        if name in OUTAGE_PROCESSES and not outage:
            continue
        args = shlex.split(process)
        if args and args[0] == "dnsrace":
            args = [sys.executable, "-m", "services.tools.cli", *args[1:]]
        commands[name] = args
    return commands


def health_url(name: str, settings: Settings) -> str | None:
    """Where a Procfile entry answers /healthz (None for redis, checked by PING)."""
    if name.startswith("enactor_"):
        az = "use1-" + name.removeprefix("enactor_")
        port = settings.metrics_port("enactor", AZS.index(az))
    elif name.startswith("dwfm_") and name.removeprefix("dwfm_").isdigit():
        port = settings.metrics_port("dwfm", int(name.removeprefix("dwfm_")) - 1)
    elif name == "ec2_api":
        port = settings.metrics_port("ec2_api")
    elif name == "resolver":
        port = settings.metrics_port("resolver")
    elif name.startswith("instances_"):
        port = settings.metrics_port("instances", AZS.index("use1-" + name.removeprefix(
            "instances_")))
    elif name in ("netmgr", "nlb", "service_load"):
        port = settings.metrics_port(name)
    elif name == "control":
        port = settings.control_port
    elif name in ("planner", "dns", "endpoints", "loadgen"):
        port = settings.metrics_port(name)
    elif name.startswith("loadgen.") and name.removeprefix("loadgen.").isdigit():
        port = settings.metrics_port("loadgen", int(name.removeprefix("loadgen.")) - 1)
    else:
        return None
    return f"http://127.0.0.1:{port}/healthz"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(json.loads(response.read()).get("ok"))
    except (OSError, urllib.error.URLError, ValueError):
        return False


@dataclass
class Cluster:
    settings: Settings
    env: dict[str, str]
    """``DNSRACE_*`` settings passed to every process (the rest of the environment is kept)."""
    log_dir: Path
    only: tuple[str, ...] | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    echo: Callable[[str, bytes], None] | None = None
    """Also hand every line a process prints to this (``dnsrace up``: prefixed on the terminal)."""
    copies: dict[str, int] = field(default_factory=dict)
    """More than one of a Procfile entry (``loadgen`` 3: ``loadgen``, ``loadgen.2``, ...).
    Without ``loadgen`` here, as many load generators as the rate needs (load_split.py); the
    copies of ``loadgen`` split the rate and the clients."""
    outage: bool = False
    """Also run the :data:`OUTAGE_PROCESSES` (``dnsrace up --with-outage``)."""
    _stopped: set[str] = field(default_factory=set)

    def commands(self) -> dict[str, list[str]]:
        commands = procfile_commands(outage=self.only is not None or self.outage)
        if self.only is not None:
            unknown = set(self.only) - set(commands)
            if unknown:
                raise ClusterError(f"no such process in the Procfile: {', '.join(unknown)}")
            commands = {k: v for k, v in commands.items() if k in self.only}
        for name, count in self.copies.items():
            if name in commands and name != "loadgen":
                commands.update({f"{name}.{i}": commands[name] for i in range(2, count + 1)})
        loadgens = self.loadgens()
        if "loadgen" in commands and loadgens > 1:
            base = commands["loadgen"]
            commands.update({copy_name(i): base + copy_args(self.settings, loadgens, i)
                             for i in range(loadgens)})
        return commands

    def loadgens(self) -> int:
        """Load generator processes: as ``copies`` says, else as many as the rate needs."""
        return self.copies.get("loadgen") or loadgen_count(self.settings)

    def ports(self) -> dict[int, str]:
        """Every TCP port the cluster listens on 127.0.0.1, with what listens there."""
        s = self.settings
        ports = {s.dns_port: "dns", s.control_port: "control"}
        if s.embedded_redis:
            ports[s.redis_port] = "redis"
        if s.resolver == "unbound" and "resolver" in self.commands():
            ports.update({s.resolver_port: "resolver", s.resolver_port + 1: "resolver control"})
        for name in self.commands():
            url = health_url(name, s)
            if url is not None:
                ports.setdefault(int(url.rsplit(":", 1)[1].split("/")[0]), name)
        return ports

    def check_ports_free(self) -> None:
        """Fail at once, and say why, when another cluster holds our ports."""
        for port, owner in sorted(self.ports().items()):
            with socket.socket() as probe:
                # As the servers do: a port with connections in TIME_WAIT is free to listen on.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    raise ClusterError(
                        f"port {port} ({owner}) is in use: another dnsrace cluster is probably "
                        "running; stop it, or move this one with DNSRACE_*_PORT settings"
                    ) from None

    def start(self, names: tuple[str, ...] | None = None) -> None:
        if names is None:
            self.check_ports_free()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
        env.update(self.env)
        # This interpreter's bin first: 'dnsrace' and its tools resolve without an activated venv.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        for name, args in self.commands().items():
            if names is not None and name not in names:
                continue
            self._stopped.discard(name)
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            process = subprocess.Popen(
                args, stdout=log if self.echo is None else subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=REPO, start_new_session=True,
            )
            self.processes[name] = process
            if self.echo is not None and process.stdout is not None:
                threading.Thread(target=_tee, args=(process.stdout, log, name, self.echo),
                                 daemon=True, name=f"output-{name}").start()
            else:
                log.close()

    def health(self, name: str) -> bool:
        """Does this process answer as healthy (Redis: PING; the others: /healthz)?"""
        url = health_url(name, self.settings)
        if url is None:
            return name != "redis" or not self.settings.embedded_redis or port_answers(
                self.settings.redis_port)
        return healthy(url)

    def wait_healthy(self, timeout_s: float = 15.0, names: tuple[str, ...] | None = None) -> float:
        """Wait until every process answers /healthz OK; return the seconds it took."""
        started = time.monotonic()
        pending = {n for n in self.processes if names is None or n in names}
        while pending:
            for name in sorted(pending):
                process = self.processes[name]
                if process.poll() is not None:
                    raise ClusterError(f"{name} exited with {process.returncode}; "
                                       f"see {self.log_dir / (name + '.log')}")
                if self.health(name):
                    pending.discard(name)
            if pending and time.monotonic() - started > timeout_s:
                raise ClusterError(f"not healthy after {timeout_s:.0f} s: "
                                   f"{', '.join(sorted(pending))}; logs in {self.log_dir}")
            if pending:
                time.sleep(0.1)
        return time.monotonic() - started

    def signal(self, name: str, sig: signal.Signals) -> None:
        process = self.processes[name]
        if process.poll() is None:
            os.kill(process.pid, sig)

    def stop_one(self, name: str, timeout_s: float = STOP_TIMEOUT_S) -> None:
        process = self.processes.get(name)
        self._stopped.add(name)
        if process is not None:
            terminate(process, timeout_s)

    def restart(self, name: str) -> None:
        self.stop_one(name)
        self.start((name,))

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: no clean-up, no flush, no goodbye."""
        process = self.processes[name]
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def crashed(self) -> list[str]:
        """Processes that exited although nobody stopped them."""
        return [n for n, p in self.processes.items() if p.poll() is not None
                and n not in self._stopped]

    def revive(self) -> list[str]:
        """Restart every crashed process (the supervisor's one job); return their names."""
        names = self.crashed()
        for name in names:
            self.start((name,))
        return names

    def stop(self) -> None:
        # Clients first, Redis last, so nobody counts a failure or a lost connection on the way
        # out that the system under test did not cause.
        # Each tier is stopped at once: its processes are signalled together.
        tiers: dict[int, list[str]] = {}
        for name in self.processes:
            tiers.setdefault(0 if name.startswith("loadgen") else 2 if name == "redis" else 1,
                             []).append(name)
        for tier in sorted(tiers):
            self._stopped.update(tiers[tier])
            terminate_all([self.processes[n] for n in tiers[tier]], STOP_TIMEOUT_S)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tee(output: IO[bytes], log: IO[bytes], name: str,
         echo: Callable[[str, bytes], None]) -> None:
    """Copy a child's output, line by line, to its log and to ``echo`` until it closes."""
    with output, log:
        for line in output:
            log.write(line)
            log.flush()
            echo(name, line)


def cluster_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The ``DNSRACE_*`` variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}
    for key, value in vars(settings).items():
        if isinstance(value, tuple):
            value = ",".join(value)
        env[f"DNSRACE_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(
            value)
    env.update(extra)
    return env
