"""change_batch.lua, this checkout's against another commit's, in the same Redis, alternating.

Redis's CPU per endpoint for an enactor's change batches, measured on a loaded machine: the
two scripts take turns window by window (512 endpoints each, as the enactor sends them) on one
zone, so both meet the same load; Redis's CPU comes from ``/proc`` (its threads' schedstat).
The baseline script is the one of ``--baseline-rev``, sent as that commit's ``ZoneStore``
sent it: one batch per call before e01fe25, ``BATCHES_PER_CALL`` per call since (with the tree
index's key since c878764), all pipelined; ours takes ``BATCHES_PER_CALL`` per call. Which
layout a script has is read from its header comment (:func:`baseline_layout`).

    .venv/bin/python -m bench.change_batch_ab [--endpoints 20000] [--baseline-rev 8c43b62]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import zonedata
from bench.common import REPO, BenchError, run_in_tempdir, tree_cpu_seconds
from services.core.records import ChangeBatch
from services.store import zone as zone_store
from services.store.plans import PlanStore

WINDOW = 512


@dataclass(frozen=True)
class BaselineLayout:
    """How a commit's change_batch.lua takes its batches."""

    batches_per_call: int
    """1: ARGV is (batch, channel, now_ms); more: (channel, now_ms, JSON array of batches)."""
    keys: int
    """3 (record sets, serial, references) or 4 (and the tree index)."""


def baseline_layout(script: str) -> BaselineLayout:
    """The layout its header comment declares; a :class:`BenchError` for a script that is not
    change_batch.lua as any commit wrote it."""
    keys = 4 if re.search(r"^-- KEYS\[4\]", script, re.M) else 3
    if re.search(r"^-- ARGV\[1\] the batch as JSON", script, re.M):
        return BaselineLayout(1, keys)
    if re.search(r"^-- ARGV\[3\] the batches as one JSON array", script, re.M):
        return BaselineLayout(zone_store.BATCHES_PER_CALL, keys)
    raise BenchError("its change_batch.lua declares neither ARGV layout this bench knows (one "
                     "batch in ARGV[1], or a JSON array of batches in ARGV[3])")


def baseline_script(rev: str) -> str:
    """That commit's change_batch.lua; a :class:`BenchError` if git has no such file there."""
    done = subprocess.run(["git", "show", f"{rev}:services/store/lua/change_batch.lua"],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"git has no services/store/lua/change_batch.lua at {rev!r}: "
                         f"{done.stderr.strip()}")
    return done.stdout


async def _apply_baseline(s: zonedata.Store, sha: str, layout: BaselineLayout,
                          batches: list[ChangeBatch]) -> None:
    """The batches as the baseline's commit sent them: pipelined calls of its layout."""
    keys = zone_store.ZoneKeys()
    names = [keys.rrsets, keys.serial, keys.refs, keys.trees][:layout.keys]
    now_ms = int(time.time() * 1000)
    step = layout.batches_per_call
    async with s.client.pipeline(transaction=False) as pipe:
        for first in range(0, len(batches), step):
            part = batches[first:first + step]
            if step == 1:
                pipe.evalsha(sha, len(names), *names, part[0].to_json(), keys.channel, now_ms)
            else:
                pipe.evalsha(sha, len(names), *names, keys.channel, now_ms,
                             zone_store._batches_json(part))
        for raw in await pipe.execute():
            outcomes = json.loads(raw)
            for outcome in outcomes if isinstance(outcomes, list) else [outcomes]:
                if not outcome["ok"]:
                    raise BenchError(f"the baseline refused a batch: {outcome}")


async def measure(root: Path, endpoints: int, rev: str, rounds: int) -> dict[str, Any]:
    cpu: dict[str, list[float]] = {"baseline": [], "ours": []}
    async with zonedata.store(root, endpoints) as s:
        await s.apply_plan(1)
        await s.apply_plan(2)
        script = baseline_script(rev)
        layout = baseline_layout(script)
        sha = await s.client.script_load(script)
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
                    await _apply_baseline(s, sha, layout, batches)
                cpu[which].append(1e6 * (tree_cpu_seconds(pid) - before) / len(batches))
                used[which] += len(batches)
    return {"endpoints": endpoints, "rounds": rounds, "window": WINDOW,
            "baseline_rev": rev, "baseline_batches_per_call": layout.batches_per_call,
            "batches": used,
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
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        baseline_layout(baseline_script(args.baseline_rev))
    except BenchError as e:
        parser.error(f"--baseline-rev {args.baseline_rev}: {e}")
    return run_in_tempdir(
        "change_batch_ab",
        lambda root: measure(root, args.endpoints, args.baseline_rev, args.rounds), argv, args.out)


if __name__ == "__main__":
    sys.exit(main())
