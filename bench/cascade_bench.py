"""The cascade's figures: ``dnsrace cascade --stage dwfm --json``, legacy and queue_throttle.

    .venv/bin/python -m bench.cascade_bench [--out bench/results/issue14-cascade.json]

Runs the command as a user does, on ports of its own (never a running cluster's), once in
legacy (the collapse watched for the default 30 s) and once in safe with
``DNSRACE_PROTECTIONS=queue_throttle`` (the race still empties the name), and writes both JSON
objects with the command's wall time, the machine, its load and the commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO, machine, run_dnsrace_json

RUNS: dict[str, tuple[str, dict[str, str]]] = {
    "legacy": ("legacy", {}),
    "queue_throttle": ("safe", {"DNSRACE_PROTECTIONS": "queue_throttle"}),
}
"""Each run's ``--mode`` and extra settings."""


def run(name: str, mode: str, extra: dict[str, str]) -> dict[str, Any]:
    done = run_dnsrace_json(f"cascade-{name}", ["cascade", "--stage", "dwfm", "--json",
                                                "--mode", mode], extra, timeout_s=600)
    return {"command_wall_s": done.wall_s, "loadavg_at_start": done.loadavg_at_start,
            "summary": done.summary}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cascade_bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/issue14-cascade.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "dnsrace cascade --stage dwfm --json",
                              "machine": machine(),
                              "runs": {name: run(name, *spec) for name, spec in RUNS.items()}}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, r in result["runs"].items():
        s = r["summary"]
        print(f"{name:<15} wall {r['command_wall_s']:6.1f} s  outage {s['dns_outage_s']} s  "
              f"min held {s['leases_min_held']}/{s['leases_total']}  collapse {s['collapse']} "
              f"({s['collapse_s']} s)  recovery {s['lease_recovery_s']} s")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
