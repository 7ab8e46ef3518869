"""The load generator: achieved vs target rate, and its most on one core (taskset).

A cluster subset from the Procfile (redis, planner, one enactor, dns, endpoints) runs
with its own ports; ``python -m loadgen`` runs as its own process against it for a bounded
time, and its JSON summary is read.  For the one-core figure the load generator is pinned to
one CPU and the cluster to the other; the rate steps up until a step is not sustained
(achieved < 99 % of target, any arrival dropped or late, or < 99 % of requests ok).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, BenchError, cpu_seconds, wait_answering
from services import config
from services.config import Settings
from services.core import names
from services.runtime.cluster import Cluster, cluster_env
from services.runtime.ports import free_port, metrics_port_base

PROCESSES = ("redis", "planner", "enactor_az1", "dns", "endpoints")


def _settings(root: Path) -> Settings:
    return config.load({}, redis_port=free_port(), dns_port=free_port(),
                       control_port=free_port(), metrics_port_base=metrics_port_base(),
                       lb_network="127.0.31", lb_port=free_port(), cells=0,
                       state_dir=str(root / "state"), log_level="WARNING")


def _load(settings: Settings, rate: float, duration_s: float, cpu: int | None,
          cluster: Cluster, clients: int = 0) -> dict[str, Any]:
    args = [PYTHON, "-m", "loadgen", "--rate", f"{rate:g}", "--duration", f"{duration_s:g}",
            "--ramp", "0", "--json", "--metrics-port", "0", "--max-in-flight", "2000",
            "--clients", str(clients)]
    if cpu is not None:
        args = ["taskset", "-c", str(cpu), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(cluster_env(settings))
    busy_before = {n: cpu_seconds(cluster.pid(n)) for n in ("dns", "endpoints")}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               text=True)
    try:
        out, err = process.communicate(timeout=duration_s + 60)
    finally:
        if process.poll() is None:
            process.kill()
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise BenchError(f"loadgen failed ({process.returncode}): {err[-1500:]}")
    summary = json.loads(out[out.index("{"):])
    usage = {n: round((cpu_seconds(cluster.pid(n)) - busy_before[n]) / wall, 2)
             for n in busy_before}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    usage["loadgen"] = round((after.ru_utime + after.ru_stime - children.ru_utime
                              - children.ru_stime) / wall, 2)
    sent = summary["sent"]
    ok = summary["outcomes"].get("ok", 0)
    result = {
        "target_rate": rate, "duration_s": summary["duration_s"],
        "scheduled": summary["scheduled"], "sent": sent, "dropped": summary["dropped"],
        "late": summary["late"], "ok": ok, "completed": summary["completed"],
        "achieved_rate": summary["achieved_rate_per_s"],
        "achieved_pct_of_target": round(100 * summary["achieved_rate_per_s"] / rate, 2),
        "ok_pct": round(100 * ok / sent, 2) if sent else 0.0,
        "latency_ms": summary["latency"],
        "cpu_cores_used": usage,
        "pinned_cpu": cpu,
        "clients": clients,
        "retries": summary.get("retries", 0),
    }
    result["sustained"] = (result["achieved_pct_of_target"] >= 99.0 and not result["dropped"]
                           and result["late"] <= 0.01 * sent and result["ok_pct"] >= 99.0)
    return result


def run(root: Path, duration_s: float = 10.0, step_s: float = 5.0,
        rates: tuple[float, ...] = (2000, 3000, 4000, 5000, 6000, 8000)) -> dict[str, Any]:
    settings = _settings(root)
    cluster = Cluster(settings, cluster_env(settings), root / "cluster-logs", only=PROCESSES)
    out: dict[str, Any] = {}
    with cluster:
        cluster.start()
        cluster.wait_healthy(30)
        wait_answering(settings.dns_port, names.REGIONAL, timeout_s=30)
        _load(settings, 500, 2, None, cluster)  # warm-up: connections, caches
        out["at_2000"] = _load(settings, 2000, duration_s, None, cluster)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            for name in PROCESSES:
                os.sched_setaffinity(cluster.pid(name), {cpus[0]})
            steps = []
            for rate in rates:
                step = _load(settings, rate, step_s, cpus[-1], cluster)
                steps.append(step)
                if not step["sustained"]:
                    break
            out["one_core_steps"] = steps
            passed = [s["target_rate"] for s in steps if s["sustained"]]
            out["one_core_max_sustained_rate"] = max(passed) if passed else None
            for name in PROCESSES:
                os.sched_setaffinity(cluster.pid(name), set(cpus))
    return out
