"""A large zone's load time with the compiled fast path on and off, side by side.

Our server is started on the same bulk-loaded zone again and again, the fast path on and off
in turn (``DNSRACE_DNS_FAST_PATH``), and each start is timed from the process's start to its
first answer; RSS once loaded. Medians per side.

    .venv/bin/python -m bench.zone_load_ab [--endpoints 200000] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import servers, zonedata
from bench.common import BenchError, proc_status, run_in_tempdir

SIDES = {"fast path": True, "python": False}


async def measure(root: Path, endpoints: int, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    async with zonedata.store(root, endpoints, appendonly=False) as s:
        record_sets = await zonedata.bulk_load(s) + 3
        for n in range(rounds):
            order = list(SIDES) if n % 2 == 0 else list(reversed(SIDES))
            for side in order:
                started = time.perf_counter()
                server = servers.start_ours(root, s.url, timeout_s=120, name=f"ours-{n}",
                                            fast_path=SIDES[side])
                try:
                    ready_s = time.perf_counter() - started
                    rss = proc_status(server.pid)["VmRSS"] / 1024
                finally:
                    server.stop()
                runs[side].append({"first_answer_s": round(ready_s, 2),
                                   "rss_mib": round(rss, 1)})
                print(f"round {n + 1}/{rounds} {side:<9} first answer after {ready_s:.2f} s, "
                      f"RSS {rss:.0f} MiB", file=sys.stderr, flush=True)
    return {"endpoints": endpoints, "record_sets": record_sets, "rounds": rounds, "runs": runs,
            "first_answer_s_median": {side: statistics.median(r["first_answer_s"] for r in got)
                                      for side, got in runs.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--endpoints", type=int, default=200_000,
                        help="endpoints of the zone (5 record sets each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.endpoints < 4 or args.rounds < 1:
        parser.error("--endpoints must be at least 4 and --rounds at least 1")
    try:
        return run_in_tempdir("zone_load_ab",
                              lambda root: measure(root, args.endpoints, args.rounds), argv,
                              args.out)
    except BenchError as e:
        print(f"zone_load_ab: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
