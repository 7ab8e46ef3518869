"""Where ``change_batch.lua``'s time goes, phase by phase (issue 16: the 100,000-endpoint plan).

``bench.enactor_split`` says how much of a round is ``change_batch.lua``; this says what in it.
The script is cut after each of its phases (a ``return`` inserted before the next one) into
three shortened copies that write nothing:

- ``decode``: the call itself, its arguments, ``cjson.decode`` of the batches;
- ``prefetch``: and the reads of every record set and reference count the batches name;
- ``judge``: and each batch judged against the zone (the overlay of the batches before it);
- ``whole``: the script as the enactor runs it: and the writes (record sets, counts, tree
  index, serial), the notifications, the outcomes.

Every window of the enactor's batches (512 endpoints, in calls of ``BATCHES_PER_CALL``, as
``ZoneStore.apply_many`` sends them) is run through the three copies and then the whole
script, so all four meet the same zone, and the zone moves on as in a round. Redis's CPU comes
from ``/proc`` (its threads' schedstat). A phase's cost is the difference between a copy and
the one before it, per endpoint; medians over the windows.

    .venv/bin/python -m bench.change_batch_phases [--endpoints 20000] [--rounds 3] [--out F]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import zonedata
from bench.common import BenchError, run_in_tempdir, tree_cpu_seconds
from services.store import zone as zone_store
from services.store.plans import PlanStore

WINDOW = 512
CUTS = {
    "decode": "local now = redis.call('TIME')",
    "prefetch": "local outcomes = {}\nlocal committed = 0",
    "judge": "-- The committed batches' writes",
}
"""Each shortened copy returns just before this line of the script (the next phase's first)."""
PHASES = (*CUTS, "whole")


def scripts(source: str) -> dict[str, str]:
    """The shortened copies and the whole script, in phase order."""
    out = {}
    for phase, line in CUTS.items():
        if source.count(line) != 1:
            raise BenchError(f"change_batch.lua no longer has the line {line!r} once: "
                             "update CUTS to its phases")
        out[phase] = source.replace(line, "do return '[]' end\n" + line)
    out["whole"] = source
    return out


def phase_costs(per_phase: dict[str, float]) -> dict[str, float]:
    """Cumulative figures (each copy includes the phases before it) -> each phase's own."""
    out, before = {}, 0.0
    for phase in PHASES:
        out[phase if phase != "whole" else "write_and_publish"] = round(
            per_phase[phase] - before, 1)
        before = per_phase[phase]
    return out


async def measure(root: Path, endpoints: int, rounds: int) -> dict[str, Any]:
    cpu: dict[str, list[float]] = {phase: [] for phase in PHASES}
    async with zonedata.store(root, endpoints) as s:
        await s.apply_plan(1)
        await s.apply_plan(2)
        shas = {phase: await s.client.script_load(source) for phase, source
                in scripts(zone_store._script("change_batch.lua")).items()}
        zone = s.zone()
        keys = zone.keys
        pid = s.redis.process.pid if s.redis.process else 0
        policy = s.enactor().policy
        for generation in range(3, 3 + rounds):
            await s.publish_plan(generation)
            plan = await PlanStore(s.client).newest()
            assert plan is not None
            items = list(plan.endpoints.items())
            for start in range(0, len(items), WINDOW):
                window = items[start:start + WINDOW]
                now_ms = int(time.time() * 1000)
                batches = await s.window_batches(generation, window, policy, now_ms)
                for phase in PHASES:
                    before = tree_cpu_seconds(pid)
                    async with s.client.pipeline(transaction=False) as pipe:
                        for i in range(0, len(batches), zone_store.BATCHES_PER_CALL):
                            part = batches[i:i + zone_store.BATCHES_PER_CALL]
                            pipe.evalsha(shas[phase], len(keys.change_batch),
                                         *keys.change_batch, keys.channel, now_ms,
                                         zone_store._batches_json(part))
                        await pipe.execute()
                    cpu[phase].append(1e6 * (tree_cpu_seconds(pid) - before) / len(batches))
    medians = {phase: round(statistics.median(values), 1) for phase, values in cpu.items()}
    return {"endpoints": endpoints, "rounds": rounds, "window": WINDOW,
            "batches_per_call": zone_store.BATCHES_PER_CALL, "windows": len(cpu["whole"]),
            "redis_cpu_us_per_endpoint_cumulative": medians,
            "redis_cpu_us_per_endpoint_by_phase": phase_costs(medians)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--endpoints", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="plans applied, each measured")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.endpoints < 10:
        parser.error("--endpoints must be at least 10")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return run_in_tempdir("change_batch_phases",
                          lambda root: measure(root, args.endpoints, args.rounds), argv,
                          args.out)


if __name__ == "__main__":
    sys.exit(main())
