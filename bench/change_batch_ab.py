"""change_batch.lua, this checkout's against another commit's, in the same Redis, alternating.

Redis's CPU per endpoint for an enactor's change batches, measured on a loaded machine: the
two scripts take turns window by window (512 endpoints each, as the enactor sends them) on one
zone, so both meet the same load; Redis's CPU comes from ``/proc`` (its threads' schedstat).
The baseline script is the one of ``--baseline-rev`` (one batch per call, pipelined, as that
commit's ``ZoneStore.apply_many`` sent them); ours takes ``BATCHES_PER_CALL`` per call.

    .venv/bin/python -m bench.change_batch_ab [--endpoints 20000] [--baseline-rev 8c43b62]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import zonedata
from bench.common import REPO, run_in_tempdir, tree_cpu_seconds
from services.core.records import ChangeBatch
from services.store import zone as zone_store
from services.store.plans import PlanStore

WINDOW = 512


def baseline_script(rev: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:services/store/lua/change_batch.lua"],
                          cwd=REPO, check=True, capture_output=True, text=True).stdout


async def _apply_baseline(s: zonedata.Store, sha: str, batches: list[ChangeBatch]) -> None:
    """The baseline's wire form: ARGV batch JSON, channel, now_ms; one call per batch."""
    keys = zone_store.ZoneKeys()
    now_ms = int(time.time() * 1000)
    async with s.client.pipeline(transaction=False) as pipe:
        for batch in batches:
            pipe.evalsha(sha, 3, keys.rrsets, keys.serial, keys.refs, batch.to_json(),
                         keys.channel, now_ms)
        for raw in await pipe.execute():
            if not json.loads(raw)["ok"]:
                raise RuntimeError(f"baseline refused a batch: {raw}")


async def measure(root: Path, endpoints: int, rev: str, rounds: int) -> dict[str, Any]:
    cpu: dict[str, list[float]] = {"baseline": [], "ours": []}
    async with zonedata.store(root, endpoints) as s:
        await s.apply_plan(1)
        await s.apply_plan(2)
        sha = await s.client.script_load(baseline_script(rev))
        zone = s.zone()
        pid = s.redis.process.pid if s.redis.process else 0
        enactor = s.enactor()
        used = {"baseline": 0, "ours": 0}
        for generation in range(3, 3 + rounds):
            await s.publish_plan(generation)
            plan = await PlanStore(s.client).newest()
            assert plan is not None
            items = list(plan.endpoints.items())
            for index, start in enumerate(range(0, len(items), WINDOW)):
                window = items[start:start + WINDOW]
                batches = await s.window_batches(generation, window, enactor.policy,
                                                 int(time.time() * 1000))
                which = "ours" if (index + generation) % 2 else "baseline"
                before = tree_cpu_seconds(pid)
                if which == "ours":
                    outcomes = await zone.apply_many(batches)
                    assert all(not isinstance(o, Exception) for o in outcomes)
                else:
                    await _apply_baseline(s, sha, batches)
                cpu[which].append(1e6 * (tree_cpu_seconds(pid) - before) / len(batches))
                used[which] += len(batches)
    return {"endpoints": endpoints, "rounds": rounds, "window": WINDOW,
            "baseline_rev": rev, "batches": used,
            "redis_cpu_us_per_endpoint": {
                k: {"median": round(statistics.median(v), 1),
                    "quartiles": [round(q, 1) for q in statistics.quantiles(v, n=4)],
                    "windows": len(v)} for k, v in cpu.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--endpoints", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-rev", default="8c43b62")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.endpoints < 4 * WINDOW:
        parser.error(f"--endpoints must be at least {4 * WINDOW} (windows to alternate)")
    return run_in_tempdir(
        "change_batch_ab",
        lambda root: measure(root, args.endpoints, args.baseline_rev, args.rounds), argv, args.out)


if __name__ == "__main__":
    sys.exit(main())
