"""The enactor: wall time to apply one plan over N endpoints, and where that time goes.

``Enactor.run_round`` runs exactly as in the enactor process (Redis history, fault gate,
legacy policy) against a real Redis, on a plan of N endpoints that replaces the applied one
(new tree, alias flip, rollback move, lock), in two Redis configurations: the cluster's
(append-only file, ``appendfsync always``) and without persistence.  Redis's own command
statistics give round-trips and server time per endpoint; ``cProfile`` gives the client's
side.  A pipelined prototype of the same writes (same Lua scripts, same decisions, same
history events; windows of endpoints per round-trip) sizes the fix that is proposed.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from pathlib import Path
from typing import Any

from bench import zonedata
from services import history, names
from services.enactor_decisions import Commit, decide_endpoint
from services.plans import PlanStore
from services.records import BatchRejected, decode_alias
from services.zone_store import EndpointRecords, ZoneStore

CLIENT_COMMANDS = frozenset({"evalsha", "eval", "xadd", "get", "hgetall", "hscan", "hmget"})
"""Commands the enactor sends itself (one round-trip each); the rest run inside Lua."""


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


async def timed_round(s: zonedata.Store, generation: int, endpoints: int,
                      profile: bool = False) -> dict[str, Any]:
    """Publish plan ``generation`` and time one ``run_round`` applying it."""
    await s.publish_plan(generation)
    enactor = s.enactor()
    before = await _command_stats(s)
    profiler = cProfile.Profile() if profile else None
    cpu = time.process_time()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    report = await enactor.run_round()
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    stats = _delta(before, await _command_stats(s))
    stats.pop("info", None)
    redis_calls = sum(c for c, _ in stats.values())
    redis_usec = sum(u for _, u in stats.values())
    network = {k: v for k, v in stats.items()
               if k in CLIENT_COMMANDS}
    result: dict[str, Any] = {
        "endpoints": endpoints, "generation": generation, "committed": report.committed,
        "rejected": report.rejected, "deleted": report.deleted,
        "wall_s": round(wall, 3), "client_cpu_s": round(cpu, 3),
        "redis_server_s": round(redis_usec / 1e6, 3),
        "per_endpoint_ms": round(1000 * wall / endpoints, 3),
        "round_trips": sum(c for c, _ in network.values()),
        "round_trips_per_endpoint": round(sum(c for c, _ in network.values()) / endpoints, 2),
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


async def pipelined_round(s: zonedata.Store, generation: int, window: int = 500
                          ) -> dict[str, Any]:
    """A prototype of the proposed fix: the same reads, decisions, batches and history
    events, but ``window`` endpoints per round-trip (each batch still its own atomic Lua
    call).  No lock contention handling: one enactor runs here, so none is needed."""
    await s.publish_plan(generation)
    plan = await PlanStore(s.client).newest()
    assert plan is not None
    zone = s.zone()
    sink = history.RedisHistory(s.client, source="enactor/bench-pipelined")
    policy = s.enactor().policy
    keys = zone.keys
    before = await _command_stats(s)
    started = time.perf_counter()
    items = list(plan.endpoints.items())
    committed = rejected = 0
    for start in range(0, len(items), window):
        chunk = items[start:start + window]
        async with s.client.pipeline(transaction=False) as pipe:
            for endpoint, _ in chunk:
                await zone._read_endpoint(
                    keys=[keys.rrsets],
                    args=[endpoint, names.rollback_name(endpoint), names.lock_name(endpoint),
                          names.tree_name(generation, endpoint)], client=pipe)
            views = await pipe.execute()
        now_ms = int(time.time() * 1000)
        commits: list[tuple[str, Commit]] = []
        for (endpoint, addresses), raw in zip(chunk, views, strict=True):
            view = EndpointRecords(*(v if v else None for v in raw))
            decision = decide_endpoint(generation, endpoint, addresses, view, policy, now_ms)
            if isinstance(decision, Commit):
                commits.append((endpoint, decision))
        async with s.client.pipeline(transaction=False) as pipe:
            for _, decision in commits:
                await zone._apply(keys=[keys.rrsets, keys.serial, keys.refs],
                                  args=[decision.batch.to_json(), keys.channel], client=pipe)
            results = await pipe.execute()
        events: list[history.Event] = []
        for (endpoint, decision), raw in zip(commits, results, strict=True):
            parsed = _parse_commit(raw)
            if parsed is None:
                rejected += 1
                continue
            committed += 1
            events.append(history.BatchCommitted(
                endpoint=endpoint, generation=generation, previous=decision.previous,
                rollback=decision.rollback, serial=parsed, repaired=decision.repairs))
        async with s.client.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(sink.key, {"e": event.to_json()}, maxlen=sink.maxlen,
                          approximate=True)
            await pipe.execute()
    wall = time.perf_counter() - started
    stats = _delta(before, await _command_stats(s))
    stats.pop("info", None)
    return {"endpoints": len(items), "window": window, "committed": committed,
            "rejected": rejected, "wall_s": round(wall, 3),
            "redis_server_s": round(sum(u for _, u in stats.values()) / 1e6, 3),
            "round_trips": 3 * -(-len(items) // window)}


def _parse_commit(raw: str) -> int | None:
    import json

    result = json.loads(raw)
    return int(result["serial"]) if result["ok"] else None


async def check_applied(zone: ZoneStore, generation: int, endpoints: tuple[str, ...]) -> int:
    """How many endpoints' aliases name plan ``generation`` (a sanity check)."""
    values = await zone.client.hmget(zone.keys.rrsets, [f"{e}|ALIAS" for e in endpoints])
    return sum(1 for v in values if v and decode_alias(v).generation == generation)


async def run(root: Path, endpoints: int = 10_000, pipelined: bool = True) -> dict[str, Any]:
    """Every enactor figure, on one fresh Redis."""
    out: dict[str, Any] = {"endpoints": endpoints}
    async with zonedata.store(root, endpoints, appendonly=False) as s:
        setup = time.perf_counter()
        await s.apply_plan(1)  # every endpoint gets a tree and an alias: the state to replace
        out["setup_first_plan_s"] = round(time.perf_counter() - setup, 2)
        await _persistence(s, appendonly=True)
        out["cluster_config"] = await timed_round(s, 2, endpoints)
        await _persistence(s, appendonly=False)
        out["no_persistence"] = await timed_round(s, 3, endpoints)
        out["profiled_no_persistence"] = await timed_round(s, 4, endpoints, profile=True)
        if pipelined:
            await _persistence(s, appendonly=True)
            out["pipelined_prototype_cluster_config"] = await pipelined_round(s, 5)
            await _persistence(s, appendonly=False)
            out["pipelined_prototype_no_persistence"] = await pipelined_round(s, 6)
            applied = await check_applied(s.zone(), 6, names.endpoints(s.settings.cells))
            out["pipelined_prototype_applied_endpoints"] = applied
    return out


__all__ = ["BatchRejected", "run"]
