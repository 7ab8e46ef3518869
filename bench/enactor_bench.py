"""The enactor: wall time to apply one plan over N endpoints, and where that time goes.

``Enactor.run_round`` runs exactly as in the enactor process (Redis history, fault gate,
legacy policy, the ``enactor_window`` setting) against a real Redis, on a plan of N endpoints
that replaces the applied one (new tree, alias flip, rollback move, lock), in two Redis
configurations: the cluster's (append-only file, ``appendfsync always``) and without
persistence.  Redis's own command statistics give the commands sent and the time Redis was
busy with them (wall time inside each command: on a loaded machine it includes waiting for a
CPU); ``redis_cpu_s`` is the Redis process's CPU from ``/proc`` (its threads' schedstat), which
holds better under load, as the client's ``process_time`` does; ``cProfile`` gives the
client's side.  A sweep of window sizes in the
cluster's configuration is what the setting's default is chosen from.

Every measured round meets the same zone: two generations of trees (the applied one and its
rollback's).  Each round's clean-up scans every tree but deletes none (so rounds compare), but in
``cluster_config_with_cleanup``, whose clean-up deletes one generation's trees as a round in
the steady state does; between rounds older trees are pruned in big batches, unmeasured.
"""

from __future__ import annotations

import cProfile
import dataclasses
import io
import pstats
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import zonedata
from bench.common import tree_cpu_seconds
from services.core import names
from services.core.records import (
    Action,
    Change,
    ChangeBatch,
    RecordSet,
    RecordType,
    decode_alias,
)
from services.enactor.service import collector_tuned
from services.store.zone import ZoneStore

CLIENT_COMMANDS = frozenset({"evalsha", "get", "script", "script|load"})
"""Commands the enactor sends itself (the rest run inside its Lua scripts, whose time is in
EVALSHA's).  Left out: the two single XADDs of a round (CheckPassed, RoundCompleted), as the
window's events are XADDs inside a script.  A window sends many commands per round-trip, so
``commands_sent`` counts commands, not round-trips."""
REPEATS = 3
"""Rounds measured in the cluster's configuration; ``cluster_config`` is the median one (the
machine's noise is some tenths of a second from one round to the next)."""
NO_DELETION = 1_000_000
"""A clean-up age that deletes nothing: the round scans every tree, as always, and stops."""
SWEEP = (16, 64, 128, 256, 512, 1024)
"""Windows tried in the cluster's configuration, one round each (so within the noise that
``cluster_config_walls_s`` shows). Window 1, the one-at-a-time walk, took 17.7 s on 10,000
endpoints (docs/benchmarks.md)."""


async def _command_stats(s: zonedata.Store) -> dict[str, tuple[int, int]]:
    stats = await s.client.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for k, v in stats.items()}


def _delta(before: dict[str, tuple[int, int]],
           after: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    out = {}
    for name, (calls, usec) in after.items():
        old = before.get(name, (0, 0))
        if calls - old[0]:
            out[name] = (calls - old[0], usec - old[1])
    return out


async def _persistence(s: zonedata.Store, appendonly: bool) -> None:
    """Switch the append-only file on (fsync always, as the cluster) or off, and settle."""
    await s.client.config_set("appendfsync", "always")
    await s.client.config_set("appendonly", "yes" if appendonly else "no")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = await s.client.info("persistence")
        if (int(info["aof_enabled"]) == int(appendonly) and not int(info["aof_rewrite_in_progress"])
                and not int(info.get("aof_rewrite_scheduled", 0))):
            return
        time.sleep(0.1)
    raise TimeoutError("append-only file did not settle")


async def prune(zone: ZoneStore, below: int, chunk: int = 2000) -> None:
    """Delete every tree older than generation ``below``, in big batches (no alias names one)."""
    trees = (await zone.old_trees(below, newest=0)).trees
    old = [Change(Action.DELETE, RecordSet(name, RecordType.A, value))
           for name, value in trees.items()]
    await zone.apply_many([ChangeBatch(tuple(old[i:i + chunk]))
                           for i in range(0, len(old), chunk)])


async def timed_round(s: zonedata.Store, generation: int, endpoints: int,
                      profile: bool = False, window: int | None = None,
                      cleanup_age: int = NO_DELETION, pruned: bool = False) -> dict[str, Any]:
    """Publish plan ``generation`` and time one ``run_round`` applying it (after pruning the
    trees older than ``generation - 2``, unmeasured, unless the caller has: ``pruned``)."""
    if not pruned:
        await prune(s.zone(), generation - 2)
    await s.publish_plan(generation)
    enactor = s.enactor(window=window)
    enactor.policy = dataclasses.replace(enactor.policy, cleanup_age=cleanup_age)
    before = await _command_stats(s)
    profiler = cProfile.Profile() if profile else None
    redis_pid = s.redis.process.pid if s.redis.process else 0
    redis_cpu = tree_cpu_seconds(redis_pid)
    cpu = time.process_time()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    report = await enactor.run_round()
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    redis_cpu = tree_cpu_seconds(redis_pid) - redis_cpu
    stats = _delta(before, await _command_stats(s))
    stats.pop("info", None)
    redis_calls = sum(c for c, _ in stats.values())
    network = {k: v for k, v in stats.items() if k in CLIENT_COMMANDS}
    sent = sum(c for c, _ in network.values())
    redis_usec = sum(u for _, u in network.values())
    result: dict[str, Any] = {
        "endpoints": endpoints, "window": enactor.window, "generation": generation,
        "committed": report.committed, "rejected": report.rejected, "deleted": report.deleted,
        "applied_endpoints": await check_applied(s.zone(), generation,
                                                 names.endpoints(s.settings.cells)),
        "wall_s": round(wall, 3), "client_cpu_s": round(cpu, 3),
        "redis_busy_s": round(redis_usec / 1e6, 3),
        "redis_cpu_s": round(redis_cpu, 3),
        "client_cpu_us_per_endpoint": round(1e6 * cpu / endpoints, 1),
        "redis_cpu_us_per_endpoint": round(1e6 * redis_cpu / endpoints, 1),
        "per_endpoint_ms": round(1000 * wall / endpoints, 3),
        "commands_sent": sent,
        "commands_sent_per_endpoint": round(sent / endpoints, 2),
        "redis_commands": redis_calls,
        "commands": {k: {"calls": c, "usec_per_call": round(u / c, 1)}
                     for k, (c, u) in sorted(stats.items())},
    }
    if profiler is not None:
        result["profile_top"] = _profile_top(profiler)
    return result


def _profile_top(profiler: cProfile.Profile, count: int = 18) -> list[dict[str, Any]]:
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = "/".join(Path(file).parts[-2:]) if file != "~" else "builtin"
        rows.append({"function": f"{short}:{line}({func})", "calls": calls,
                     "tottime_s": round(tottime, 3), "cumtime_s": round(cumtime, 3),
                     "share_pct": round(100 * tottime / total, 1) if total else 0.0})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:count]


async def check_applied(zone: ZoneStore, generation: int, endpoints: tuple[str, ...]) -> int:
    """How many endpoints' aliases name plan ``generation`` (a sanity check)."""
    values = await zone.client.hmget(zone.keys.rrsets, [f"{e}|ALIAS" for e in endpoints])
    return sum(1 for v in values if v and decode_alias(v).generation == generation)


async def run(root: Path, endpoints: int = 10_000, sweep: Sequence[int] = SWEEP
              ) -> dict[str, Any]:
    """Every enactor figure, on one fresh Redis (garbage collector as the enactor process's)."""
    out: dict[str, Any] = {"endpoints": endpoints}
    with collector_tuned():
        async with zonedata.store(root, endpoints, appendonly=False) as s:
            await _figures(s, endpoints, sweep, out)
    return out


async def _figures(s: zonedata.Store, endpoints: int, sweep: Sequence[int],
                   out: dict[str, Any]) -> None:
    """Set-up, then the measured rounds, each its own plan generation."""
    out["window"] = s.settings.enactor_window
    setup = time.perf_counter()
    await s.apply_plan(1)  # every endpoint gets a tree and an alias: the state to replace
    out["setup_first_plan_s"] = round(time.perf_counter() - setup, 2)
    await s.apply_plan(2)  # and a rollback: the steady state
    await _persistence(s, appendonly=True)
    generation = 2
    rounds = []
    for _ in range(REPEATS):
        generation += 1
        rounds.append(await timed_round(s, generation, endpoints))
    rounds.sort(key=lambda r: r["wall_s"])
    out["cluster_config"] = rounds[len(rounds) // 2]
    out["cluster_config_walls_s"] = [r["wall_s"] for r in rounds]
    out["window_sweep_cluster_config"] = {}
    for window in sweep:
        generation += 1
        timed = await timed_round(s, generation, endpoints, window=window)
        out["window_sweep_cluster_config"][str(window)] = {
            k: timed[k] for k in ("wall_s", "client_cpu_s", "redis_busy_s", "redis_cpu_s",
                                  "applied_endpoints")}
    generation += 1  # cleanup age 1: the trees of generation - 2 go, one generation's worth
    out["cluster_config_with_cleanup"] = await timed_round(s, generation, endpoints,
                                                           cleanup_age=1)
    await _persistence(s, appendonly=False)
    out["no_persistence"] = await timed_round(s, generation + 1, endpoints)
    out["profiled_no_persistence"] = await timed_round(s, generation + 2, endpoints,
                                                       profile=True)
