"""System calls and context switches per query: ours, NSD and Knot at a fixed rate (issue 16).

At a moderate rate a DNS server's CPU per query is mostly what each wake-up costs. This counts,
with ``perf stat`` on every process of each server during a dnsperf run at ``--rate``, the
system calls each makes per query (epoll waits, receives, sends), its context switches and its
CPU per query: whether ours pays more because it makes more system calls than the references,
or because its own code costs more per wake-up. The zone is the DNS bench's (1,003 endpoints,
the regional name every fourth query); servers take turns, round after round.

    .venv/bin/python -m bench.dns_syscalls [--rate 25000] [--duration 8] [--rounds 3] [--out F]

Needs perf (Debian's linux-perf) allowed to read the kernel's syscall tracepoints (root, or
``kernel.perf_event_paranoid`` at -1), dnsperf, and NSD and Knot for the references.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import dnsperf, servers, zonedata
from bench.common import BenchError, require, run_in_tempdir
from bench.servers import DnsChild

CALLS = ("epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select", "pselect6",
         "recvfrom", "recvmsg", "recvmmsg", "sendto", "sendmsg", "sendmmsg", "read", "write",
         "futex")
"""The system calls counted: every way these servers wait, receive and send."""
EVENTS = ("context-switches", "task-clock", *(f"syscalls:sys_enter_{c}" for c in CALLS))


def parse_perf_stat(text: str) -> dict[str, float]:
    """``perf stat -x ,`` output -> event name (``syscalls:sys_enter_`` dropped) -> count
    (task-clock in ms). Events perf could not count are left out."""
    counts = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3:
            continue
        try:
            value = float(fields[0])
        except ValueError:  # "<not counted>", "<not supported>", a comment line
            continue
        counts[fields[2].removeprefix("syscalls:sys_enter_")] = value
    return counts


def per_query(counts: dict[str, float], queries: int) -> dict[str, float]:
    """Counts per query; task-clock (ms) becomes ``cpu_us``; zero counts are left out."""
    if queries <= 0:
        raise BenchError("no query was answered: nothing to divide by")
    out = {"cpu_us": round(counts.get("task-clock", 0.0) * 1000 / queries, 2)}
    for name, value in counts.items():
        if name != "task-clock" and value:
            out[name] = round(value / queries, 3)
    return out


def _server_pids(server: DnsChild) -> list[str]:
    """Every process of the server (NSD forks its workers): its process group."""
    found = subprocess.run(["pgrep", "-g", str(os.getpgid(server.pid))], capture_output=True,
                           text=True, check=False).stdout.split()
    return found or [str(server.pid)]


def count_run(server: DnsChild, query_file: Path, rate: float, duration_s: float,
              perf: str) -> dict[str, Any]:
    stat = subprocess.Popen([perf, "stat", "-x", ",", "-e", ",".join(EVENTS),
                             "-p", ",".join(_server_pids(server)), "--", "sleep",
                             f"{duration_s:g}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    result = dnsperf.run(server.name, server.port, query_file, duration_s, rate=rate, clients=4)
    _, err = stat.communicate()
    counts = parse_perf_stat(err)
    if not any(name in counts for name in CALLS):
        raise BenchError(f"perf counted no system call (is it allowed to read tracepoints? "
                         f"run as root): {err.strip()[-300:]}")
    return {"qps": result.qps, "p99_ms": result.p99_ms, "lost": result.lost,
            **per_query(counts, result.completed)}


async def measure(root: Path, rate: float, duration_s: float, rounds: int) -> dict[str, Any]:
    perf = require("perf")
    async with zonedata.store(root, 1003, appendonly=True) as s:
        await zonedata.populate(s, plans=2)
        zone = await zonedata.export(s, root / "zone")
        running = [servers.start_ours(root, s.url), servers.start_nsd(root, zone),
                   servers.start_knot(root, zone)]
        runs: dict[str, list[dict[str, Any]]] = {srv.name: [] for srv in running}
        try:
            for n in range(rounds):
                for server in running if n % 2 == 0 else running[::-1]:
                    runs[server.name].append(count_run(server, zone.query_file, rate,
                                                       duration_s, perf))
        finally:
            for server in running:
                server.stop()
    return {"rate_qps": rate, "duration_s": duration_s, "rounds": rounds,
            "per_query_median": {name: _medians(rows) for name, rows in runs.items()},
            "runs": runs}


def _medians(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = {k for row in rows for k, v in row.items() if isinstance(v, int | float)}
    return {k: round(statistics.median(row.get(k, 0) or 0 for row in rows), 3)
            for k in sorted(keys)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=25_000, help="dnsperf's fixed rate, q/s")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.rounds < 1:
        parser.error("--rate and --duration must be above 0, --rounds at least 1")
    try:
        return run_in_tempdir("dns_syscalls", lambda root: measure(
            root, args.rate, args.duration, args.rounds), argv, args.out)
    except BenchError as e:
        print(f"dns_syscalls: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
