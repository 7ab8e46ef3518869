"""Which alerting rules (dashboards/alerts.yml) fire during a whole ``dnsrace outage``, and when.

A real Prometheus scrapes the outage's processes with ``dnsrace up``'s configuration (issue 15's
processes included) and evaluates the rules every second; after the run, the ``ALERTS`` series
gives each alert's first and last firing second, beside the outage's own stages. Legacy should
fire all four (I1, C1, C2, C3); safe with ``queue_throttle,velocity_control`` (no DNS protection,
so the name still goes empty) only I1.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/alerts_outage.py'

(its own network namespace: the outage uses the default ports and the NLB's fixed addresses).
Needs ``dnsrace outage`` (branch outage2). Writes bench/results/issue15-alerts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, load_average, machine, require, tool_versions
from services import config
from services.runtime.ports import free_port
from services.runtime.prometheus import PrometheusServer, write_config

SAFE_PROTECTIONS = "queue_throttle,velocity_control"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def run_mode(mode: str, work: Path) -> dict[str, Any]:
    env = dict(os.environ)
    if mode == "safe":
        env["DNSRACE_PROTECTIONS"] = SAFE_PROTECTIONS
    settings = config.load()
    path = write_config(work / mode, settings, network=True, supervisor=True)
    server = PrometheusServer(path, work / mode / "data", free_port(),
                              work / mode / "prometheus.log", require("prometheus")).start()
    try:
        server.wait_ready()
        began = time.time()
        out = subprocess.run([PYTHON, "-m", "services.tools.cli", "outage", "--mode", mode,
                              "--json", "--report-dir", str(work / mode / "report")],
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        ended = time.time()
        if out.returncode != 0:
            raise SystemExit(f"dnsrace outage --mode {mode} failed ({out.returncode}): "
                             f"{out.stderr.strip().splitlines()[-1:]}")
        outage = json.loads(out.stdout)
        time.sleep(2)  # the last rule evaluation after the run (1 s interval)
        series = server.api.query_range('ALERTS{alertstate="firing"}', began, ended)
    finally:
        server.stop()
    # The outage's clock starts wall_s before it ended (to within its exit, a second or so).
    t0 = ended - float(outage["wall_s"])
    alerts = []
    for s in series:
        times = [float(t) - t0 for t, _ in s["values"]]
        alerts.append({"alert": s["metric"]["alertname"],
                       "invariant": s["metric"].get("invariant"),
                       "az": s["metric"].get("az"),
                       "first_s": round(min(times), 1), "last_s": round(max(times), 1)})
    return {"mode": mode, "protections": outage.get("protections"),
            "invariants": {k: v.get("held") for k, v in outage["invariants"].items()},
            "stages": outage["stages"], "wall_s": outage["wall_s"],
            "alerts": sorted(alerts, key=lambda a: (a["first_s"], a["az"] or "")),
            "load_average_after": load_average()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["legacy", "safe"], action="append")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" /
                        "issue15-alerts.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dnsrace-alerts-") as tmp:
        runs = [run_mode(mode, Path(tmp)) for mode in args.mode or ["legacy", "safe"]]
    for run in runs:
        print(f"{run['mode']}: invariants held {run['invariants']}, wall {run['wall_s']} s")
        for stage in run["stages"]:
            print(f"  stage {stage['name']:<34} {stage['onset_s']:>6} .. {stage['end_s']}")
        for alert in run["alerts"]:
            print(f"  alert {alert['alert']:<38} {alert['az'] or '':<9} firing "
                  f"{alert['first_s']} .. {alert['last_s']} s")
    result = {"benchmark": "alerts during dnsrace outage", "commit": _commit(),
              "machine": machine(), "tools": tool_versions(), "runs": runs}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
