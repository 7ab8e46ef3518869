"""The load generator with a client fleet: 2,000 requests/s from 1,000 virtual clients.

``python -m bench.fleet_bench [OUT.json]``: the cluster subset of :mod:`bench.loadgen_bench`,
then one ``python -m loadgen --clients 1000`` run at 2,000/s (and, for comparison, the shared
stub cache at the same rate); figures with commit, machine and load average.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import wait_answering
from bench.loadgen_bench import PROCESSES, _load, _settings
from services.core import names
from services.runtime.cluster import Cluster, cluster_env


def run(root: Path, duration_s: float = 10.0, clients: int = 1000,
        rate: float = 2000) -> dict[str, Any]:
    settings = _settings(root)
    cluster = Cluster(settings, cluster_env(settings), root / "cluster-logs", only=PROCESSES)
    out: dict[str, Any] = {}
    with cluster:
        cluster.start()
        cluster.wait_healthy(30)
        wait_answering(settings.dns_port, names.REGIONAL, timeout_s=30)
        _load(settings, 500, 2, None, cluster)  # warm-up
        out["fleet"] = _load(settings, rate, duration_s, None, cluster, clients=clients)
        out["shared_cache"] = _load(settings, rate, duration_s, None, cluster, clients=0)
    return out


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory(prefix="dnsrace-fleet-bench-") as tmp:
        figures = run(Path(tmp))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    result = {"commit": commit, "machine": {"cpus": os.cpu_count(),
                                            "platform": platform.platform(),
                                            "python": platform.python_version(),
                                            "load_average": os.getloadavg()},
              **figures}
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if target is not None:
        target.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
