"""The client fleet in one load generator process or split over several (issue 19).

``python -m bench.fleet_split_bench [OUT.json] [--rate R] [--clients N] [--copies 1,2]``: the
cluster subset of :mod:`bench.loadgen_bench`, then for each number of copies that many
``python -m loadgen`` processes at once, each with its share of the rate and of the clients
(the arguments the cluster gives its copies, services/runtime/load_split.py), for a bounded
time; their JSON summaries are added up. Figures with commit, machine and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, BenchError, wait_answering
from bench.loadgen_bench import PROCESSES, _load, _settings
from services.config import Settings
from services.core import names
from services.runtime.cluster import Cluster, cluster_env
from services.runtime.load_split import share


def split_load(settings: Settings, rate: float, clients: int, copies: int,
               duration_s: float) -> dict[str, Any]:
    """``copies`` load generators at once, splitting ``rate`` and ``clients``; their sum."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(cluster_env(settings))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    processes = [subprocess.Popen(
        [PYTHON, "-m", "loadgen", "--rate", f"{rate / copies:g}", "--duration",
         f"{duration_s:g}", "--ramp", "0", "--json", "--metrics-port", "0",
         "--max-in-flight", "2000", "--clients", str(share(clients, copies, i))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        for i in range(copies)]
    summaries = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=duration_s + 60)
        finally:
            if process.poll() is None:
                process.kill()
        if process.returncode != 0:
            raise BenchError(f"loadgen failed ({process.returncode}): {err[-1500:]}")
        summaries.append(json.loads(out[out.index("{"):]))
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sent = sum(s["sent"] for s in summaries)
    ok = sum(s["outcomes"].get("ok", 0) for s in summaries)
    achieved = sum(s["achieved_rate_per_s"] for s in summaries)
    return {
        "copies": copies, "target_rate": rate, "clients": clients,
        "scheduled": sum(s["scheduled"] for s in summaries), "sent": sent,
        "dropped": sum(s["dropped"] for s in summaries),
        "late": sum(s["late"] for s in summaries), "ok": ok,
        "achieved_rate": round(achieved, 2),
        "achieved_pct_of_target": round(100 * achieved / rate, 2),
        "ok_pct": round(100 * ok / sent, 2) if sent else 0.0,
        "p99_ms_worst_copy": max(s["latency"]["p99_ms"] or 0.0 for s in summaries),
        "loadgen_cpu_cores": round((after.ru_utime + after.ru_stime - children.ru_utime
                                    - children.ru_stime) / wall, 2),
        "load_average_after": os.getloadavg(),
    }


def run(root: Path, rate: float, clients: int, copies: list[int],
        duration_s: float) -> list[dict[str, Any]]:
    settings = _settings(root)
    cluster = Cluster(settings, cluster_env(settings), root / "cluster-logs", only=PROCESSES)
    with cluster:
        cluster.start()
        cluster.wait_healthy(30)
        wait_answering(settings.dns_port, names.REGIONAL, timeout_s=30)
        _load(settings, 500, 2, None, cluster)  # warm-up
        return [split_load(settings, rate, clients, n, duration_s) for n in copies]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_split_bench")
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--rate", type=float, default=4000)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--copies", default="1,2")
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    copies = [int(c) for c in args.copies.split(",")]
    with tempfile.TemporaryDirectory(prefix="dnsrace-fleet-split-") as tmp:
        runs = run(Path(tmp), args.rate, args.clients, copies, args.duration)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    result = {"commit": commit, "machine": {"cpus": os.cpu_count(),
                                            "platform": platform.platform(),
                                            "python": platform.python_version(),
                                            "load_average": os.getloadavg()},
              "duration_s": args.duration, "runs": runs}
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
