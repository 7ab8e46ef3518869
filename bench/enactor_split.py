"""Where one enactor round's Redis time goes, script by script (issue 16, item 2's profile).

``bench.enactor_bench`` gives Redis's busy time per command; EVALSHA's figure there mixes the
per-endpoint ``change_batch.lua`` with the window reads, the clean-up's scans and the history's
XADDs. Here Redis's SLOWLOG, set to log every command, names each EVALSHA by its script, so a
round's Redis time splits into what each script costs per call, beside the client's CPU.

    .venv/bin/python -m bench.enactor_split [--endpoints 20000] [--out FILE]

One round in the cluster's configuration (append-only, fsync always), one without persistence,
on a fresh Redis holding the steady state (two generations of trees).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import enactor_bench, zonedata
from bench.common import run_in_tempdir
from services.enactor.service import collector_tuned
from services.store import history, plans, reads
from services.store import zone as zone_store

SLOWLOG_MAX = 2_000_000
"""Entries kept: a round of N endpoints logs about 30 N commands."""


def script_names() -> dict[str, str]:
    """SHA1 of each Lua script the enactor runs -> a readable name."""
    found = {hashlib.sha1(zone_store._script("change_batch.lua").encode()).hexdigest():
             "change_batch.lua"}
    for module in (zone_store, reads, history, plans):
        for key, value in vars(module).items():
            if key.lstrip("_").isupper() and isinstance(value, str) and "redis.call" in value:
                found[hashlib.sha1(value.encode()).hexdigest()] = \
                    f"{module.__name__.rsplit('.', 1)[-1]}.{key}"
    return found


def split(entries: list[dict[str, Any]], names: dict[str, str]) -> dict[str, dict[str, float]]:
    """SLOWLOG entries -> calls, total seconds and microseconds per call, per command/script."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for entry in entries:
        command = entry["command"]
        parts = (command.decode() if isinstance(command, bytes) else str(command)).split()
        key = parts[0].lower() if parts else "?"
        if key == "evalsha" and len(parts) > 1:
            key = names.get(parts[1], parts[1][:12])
        totals[key][0] += 1
        totals[key][1] += int(entry["duration"])
    return {key: {"calls": calls, "total_s": round(usec / 1e6, 3),
                  "usec_per_call": round(usec / calls, 1)}
            for key, (calls, usec) in sorted(totals.items(), key=lambda kv: -kv[1][1])}


async def measure(root: Path, endpoints: int) -> dict[str, Any]:
    names = script_names()
    out: dict[str, Any] = {"endpoints": endpoints}
    with collector_tuned():
        async with zonedata.store(root, endpoints, appendonly=False) as s:
            await s.apply_plan(1)
            await s.apply_plan(2)
            for generation, appendonly in ((3, True), (4, False)):
                await enactor_bench._persistence(s, appendonly=appendonly)
                await enactor_bench.prune(s.zone(), generation - 2)  # not the round's
                await s.client.config_set("slowlog-log-slower-than", 0)
                await s.client.config_set("slowlog-max-len", SLOWLOG_MAX)
                await s.client.slowlog_reset()
                timed = await enactor_bench.timed_round(s, generation, endpoints, pruned=True)
                entries = await s.client.slowlog_get(SLOWLOG_MAX)
                await s.client.config_set("slowlog-log-slower-than", 10_000)
                key = "cluster_config" if appendonly else "no_persistence"
                out[key] = {k: timed[k] for k in (
                    "wall_s", "client_cpu_s", "redis_busy_s", "redis_cpu_s",
                    "client_cpu_us_per_endpoint", "redis_cpu_us_per_endpoint",
                    "applied_endpoints")}
                out[key]["redis_by_script"] = split(entries, names)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--endpoints", type=int, default=20_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.endpoints < 10:
        parser.error("--endpoints must be at least 10")
    return run_in_tempdir("enactor_split", lambda root: measure(root, args.endpoints), argv,
                          args.out)


if __name__ == "__main__":
    sys.exit(main())
