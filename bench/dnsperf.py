"""dnsperf (Debian ``dnsperf`` 2.10) runs and what they report.

dnsperf 2.10 prints the average latency but no percentiles, so the fixed-rate runs use
``-v``, which prints every query's latency; the percentiles are computed from those lines.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    percentile,
    require,
    scheduler_seconds,
    tree_cpu_seconds,
    tree_user_system_seconds,
)

_FIELDS = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "avg_latency_s": r"Average Latency \(s\):\s+([\d.]+)",
    "max_latency_s": r"Average Latency \(s\):\s+[\d.]+ \(min [\d.]+, max ([\d.]+)\)",
    "response_bytes": r"Average packet size:\s+request \d+, response (\d+)",
    "run_time_s": r"Run time \(s\):\s+([\d.]+)",
}


@dataclass
class DnsperfResult:
    server: str
    mode: str
    """``max`` (as fast as the server answers) or ``rate`` (fixed ``-Q``)."""
    sent: int
    completed: int
    lost: int
    qps: float
    avg_latency_ms: float
    max_latency_ms: float
    response_bytes: int
    run_time_s: float
    rcodes: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    target_qps: float | None = None
    command: str = ""
    server_cpu_s: float | None = None
    """Seconds the server's main thread ran during the run (``/proc/PID/schedstat``)."""
    server_wait_s: float | None = None
    """Seconds it was runnable but waiting for a CPU (the machine's share of the latency)."""
    client_cpu_s: float | None = None
    """CPU seconds dnsperf itself used."""
    server_total_cpu_s: float | None = None
    """CPU seconds of every thread and child process of the server during the run (ours: the
    event loop, the Redis client, /metrics; NSD: its server child; Knot: its workers)."""
    cpu_per_query_us: float | None = None
    """``server_total_cpu_s`` per completed query, in microseconds: the figure that holds on a
    shared machine (a rate moves with what else runs, the work per query much less)."""
    user_per_query_us: float | None = None
    """The part of it in the server's own code (user time, all threads and children)."""
    system_per_query_us: float | None = None
    """The part of it in the kernel on the server's behalf (system calls, wake-ups): the two
    differ from ``cpu_per_query_us``'s sum by the clock ticks they are counted in."""
    clients: int = 1
    """dnsperf's ``-c``: client sockets."""
    loadavg_1m: float | None = None
    """The machine's 1-minute load average at the end of the run (it is shared)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def command(port: int, query_file: Path, duration_s: float, *, rate: float | None = None,
            clients: int = 1, threads: int = 1, outstanding: int = 100,
            verbose: bool = False) -> list[str]:
    args = [require("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(query_file),
            "-l", f"{duration_s:g}", "-c", str(clients), "-T", str(threads),
            "-q", str(outstanding), "-t", "1"]
    if rate is not None:
        args += ["-Q", f"{rate:g}"]
    if verbose:
        args.append("-v")
    return args


def parse(server: str, mode: str, output: str, args: Sequence[str],
          target: float | None = None) -> DnsperfResult:
    values: dict[str, float] = {}
    for key, pattern in _FIELDS.items():
        match = re.search(pattern, output)
        if match is None:
            raise BenchError(f"dnsperf output has no {key!r}:\n{output[-1500:]}")
        values[key] = float(match.group(1))
    rcodes = re.search(r"Response codes:\s+(.*)", output)
    result = DnsperfResult(
        server=server, mode=mode, sent=int(values["sent"]), completed=int(values["completed"]),
        lost=int(values["lost"]), qps=round(values["qps"], 1),
        avg_latency_ms=round(values["avg_latency_s"] * 1000, 3),
        max_latency_ms=round(values["max_latency_s"] * 1000, 3),
        response_bytes=int(values["response_bytes"]), run_time_s=values["run_time_s"],
        rcodes=rcodes.group(1).strip() if rcodes else "", target_qps=target,
        command=" ".join(Path(a).name if a.startswith("/") and i == 0 else a
                         for i, a in enumerate(args)),
    )
    latencies = sorted(float(line.rsplit(" ", 1)[1]) for line in output.splitlines()
                       if line.startswith("> ") and _is_number(line.rsplit(" ", 1)[1]))
    if latencies:
        result.p50_ms = round(percentile(latencies, 50) * 1000, 3)
        result.p99_ms = round(percentile(latencies, 99) * 1000, 3)
        result.p999_ms = round(percentile(latencies, 99.9) * 1000, 3)
    return result


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run(server: str, port: int, query_file: Path, duration_s: float, *,
        rate: float | None = None, outstanding: int = 100, clients: int = 1,
        server_pid: int | None = None, cpus: set[int] | None = None,
        server_tree: int | None = None) -> DnsperfResult:
    """One dnsperf run: ``max`` throughput, or a fixed ``rate`` with per-query latencies;
    with ``server_pid``, the main thread's CPU time and run-queue wait during the run; with
    ``server_tree``, the CPU of that process with its threads and children, and per query;
    on ``cpus`` only when given."""
    args = command(port, query_file, duration_s, rate=rate, outstanding=outstanding,
                   clients=clients, verbose=rate is not None)
    before = scheduler_seconds(server_pid) if server_pid else None
    tree_before = tree_cpu_seconds(server_tree) if server_tree else 0.0
    split_before = tree_user_system_seconds(server_tree) if server_tree else (0.0, 0.0)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, capture_output=True, text=True, timeout=duration_s + 30,
                          preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(f"dnsperf failed ({done.returncode}): {done.stderr[-1000:]}")
    result = parse(server, "rate" if rate is not None else "max", done.stdout, args, rate)
    result.client_cpu_s = round(used.ru_utime + used.ru_stime - children.ru_utime
                                - children.ru_stime, 3)
    if server_pid and before:
        on_cpu, waiting = scheduler_seconds(server_pid)
        result.server_cpu_s = round(on_cpu - before[0], 3)
        result.server_wait_s = round(waiting - before[1], 3)
    if server_tree:
        result.server_total_cpu_s = round(tree_cpu_seconds(server_tree) - tree_before, 4)
        user, system = tree_user_system_seconds(server_tree)
        if result.completed:
            per_query = 1e6 / result.completed
            result.cpu_per_query_us = round(result.server_total_cpu_s * per_query, 3)
            result.user_per_query_us = round((user - split_before[0]) * per_query, 3)
            result.system_per_query_us = round((system - split_before[1]) * per_query, 3)
    result.clients = clients
    result.loadavg_1m = round(os.getloadavg()[0], 2)
    return result


def start_background(port: int, query_file: Path, duration_s: float,
                     rate: float) -> subprocess.Popen[str]:
    """A fixed-rate dnsperf in the background (load while something else is measured)."""
    args = command(port, query_file, duration_s, rate=rate)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
