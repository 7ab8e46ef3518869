"""The whole outage's figures: ``dnsrace outage --json``, legacy and safe.

    .venv/bin/python -m bench.outage [--only legacy|safe|safe-all|safe-velocity]

Runs the command as a user does, on ports of its own (never a running cluster's), in legacy,
in safe with ``DNSRACE_PROTECTIONS=queue_throttle,velocity_control`` (no DNS protection: the
race still empties the name), and in safe with every protection (``safe-all``: nothing should
break end to end), and in safe with ``velocity_control`` alone (``safe-velocity``: DWFM
collapses and the surge comes, so failover wants AZs out and the velocity limit is what holds
them in the name), and writes each JSON object with the command's wall time, the machine, its
load, the tool versions and the commit to ``bench/results/issue15-outage-<run>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from bench.common import REPO, load_average, machine, run_dnsrace_json

RUNS: dict[str, tuple[str, dict[str, str]]] = {
    "legacy": ("legacy", {}),
    "safe": ("safe", {"DNSRACE_PROTECTIONS": "queue_throttle,velocity_control"}),
    "safe-all": ("safe", {}),
    "safe-velocity": ("safe", {"DNSRACE_PROTECTIONS": "velocity_control"}),
}
"""Each run: its ``--mode`` and its extra settings."""


def run(mode: str, extra: dict[str, str]) -> dict[str, Any]:
    done = run_dnsrace_json(f"outage-{mode}", ["outage", "--json", "--mode", mode], extra,
                            timeout_s=900)
    return {"benchmark": f"dnsrace outage --mode {mode} --json", "machine": machine(),
            "versions": {p: metadata.version(p) for p in ("aiohttp", "redis", "dnslib")},
            "settings": extra, "command_wall_s": done.wall_s,
            "loadavg_at_start": done.loadavg_at_start, "loadavg_at_end": load_average(),
            "summary": done.summary}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__)
    parser.add_argument("--only", choices=tuple(RUNS))
    args = parser.parse_args(argv)
    for name, (mode, extra) in RUNS.items():
        if args.only and name != args.only:
            continue
        result = run(mode, extra)
        out = REPO / f"bench/results/issue15-outage-{name}.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
        s = result["summary"]
        print(f"{name:<8} wall {result['command_wall_s']:6.1f} s  in AWS's order "
              f"{s['in_aws_order']}  missing {s['stages_missing']}  invariants "
              f"{ {k: v['held'] for k, v in s['invariants'].items()} }  NLB min AZ records "
              f"{s['nlb_min_az_records']}  service ok after repair "
              f"{s['service_success_ratio_after_repair']}")
        print(s["timeline"])
        print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
