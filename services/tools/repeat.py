"""``dnsrace repeat``: the demo, a scenario or the matrix N times, every run's figures in one
JSON result (commit, machine, command), and the summary README's figures are copied from.

    dnsrace repeat demo --runs 10 --out bench/results/demo.json
    dnsrace repeat run scenarios/nemesis.toml --mode safe --runs 3 --out bench/results/nemesis.json
    dnsrace repeat matrix --runs 1 --out bench/results/matrix.json
    dnsrace repeat explore --runs 1 --out bench/results/explorer.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine
from services.config import Mode, Settings
from services.tools import fleet_args
from services.tools.demo import ModeResult, format_summary, run_mode
from services.tools.matrix import format_table, run_matrix
from services.tools.repeat_explore import run_rows
from services.tools.scenario import Outcome, ScenarioError, load_file, run_scenario


def mode_figures(r: ModeResult) -> dict[str, Any]:
    """One demo half as README's demo table shows it."""
    return {
        "mode": r.mode, "reproduced": r.reproduced, "stale_flips": r.race.stale_flips,
        "live_deletions": r.race.live_deletions, "empty_answers": r.empty_answers,
        "unanswered_polls": r.unanswered_polls, "dns_polls": r.dns_polls,
        "time_to_empty_s": r.time_to_empty_s, "time_to_failing_s": r.time_to_failing_s,
        "failure_ratio_peak": round(r.failure_ratio_peak, 3), "outage_s": r.outage_s,
        "recovery_s": r.recovery_s, "clients": r.fleet.clients if r.fleet else 1,
        "resolver": r.resolver,
        "fleet_peak_share": round(r.fleet.peak_share, 3) if r.fleet else None,
        "fleet_ramp_s": r.fleet.ramp_s if r.fleet else None,
        "fleet_recovery_ramp_s": r.fleet.recovery_ramp_s if r.fleet else None,
        "requests": int(sum(r.requests.values())),
        "failed_requests": r.failed_requests, "rejected_while_broken": r.rejected_while_broken,
        "wall_s": round(r.wall_s, 1), "problems": r.problems,
    }


def _plain(value: object) -> object:
    """A dataclass field's value as JSON sees it (the fleet's figures are dataclasses)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def outcome_figures(o: Outcome) -> dict[str, Any]:
    figures = {f.name: _plain(getattr(o, f.name)) for f in dataclasses.fields(o)
               if f.name not in ("record", "violations")}
    figures["violations"] = sorted({v.invariant.name for v in o.violations})
    figures["ok"] = o.ok
    return figures


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}" if values else "-"


def summary(result: dict[str, Any]) -> str:
    """The lines README quotes, from a result (also for a result read back from its file)."""
    runs = result["runs"]
    if result["kind"] == "demo":
        legacy = [m for run in runs for m in run if m["mode"] == "legacy"]
        reproduced = [m for m in legacy if m["reproduced"]]
        failing = [m["time_to_failing_s"] for m in reproduced
                   if m["time_to_failing_s"] is not None]
        recovery = [m["recovery_s"] for m in reproduced if m["recovery_s"] is not None]
        return (f"legacy half over {len(legacy)} runs: the outage reproduced "
                f"{len(reproduced)} times out of {len(legacy)}; clients >= 90 % failing "
                f"{_spread(failing)} s after the name went empty, recovered "
                f"{_spread(recovery)} s after the repair; the legacy half took "
                f"{_spread([m['wall_s'] for m in legacy])} s")
    if result["kind"] == "explore":
        rows = [r for run in runs for r in run]
        safe = [r for r in rows if r["row"].startswith("safe")]
        return (f"explorer: {len(rows)} rows; safe rows violated in "
                f"{sum(r['violating_schedules'] for r in safe)} of "
                f"{sum(r['schedules'] for r in safe):,} schedules")
    outcomes = [o for run in runs for o in (run if isinstance(run, list) else [run])]
    passed = sum(1 for o in outcomes if o.get("ok", not o.get("failures")))
    line = f"{result['kind']}: {passed} of {len(outcomes)} runs met every expectation"
    return line + fleet_summary(outcomes, result.get("settings", {}))


def fleet_summary(outcomes: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """Issue 19's bounds over runs with a fleet and a repair: 90 % of the clients failing
    within TTL + 2 s of the first empty answer, back to 10 % within TTL + negative TTL + 2 s
    of the repair."""
    timed = [o["events"] for o in outcomes
             if isinstance(o.get("events"), dict) and o["events"].get("repair_at_s") is not None]
    if not timed or "ttl_s" not in settings:
        return ""
    ttl, negative = settings["ttl_s"], settings["negative_ttl_s"]
    failing = [e["failing_90_at_s"] - e["empty_at_s"] for e in timed
               if e["failing_90_at_s"] is not None and e["empty_at_s"] is not None]
    recovered = [e["recovered_at_s"] - e["repair_at_s"] for e in timed
                 if e["recovered_at_s"] is not None]
    return (f"; 90 % of the fleet failing {_spread(failing)} s after the first empty answer "
            f"(within {ttl + 2} s in {sum(f <= ttl + 2 for f in failing)} of {len(timed)}), "
            f"back to 10 % {_spread(recovered)} s after the repair (within "
            f"{ttl + negative + 2} s in {sum(r <= ttl + negative + 2 for r in recovered)} of "
            f"{len(timed)})")


def repeat(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"kind": args.kind, "command": "dnsrace " + " ".join(sys.argv[1:]),
                              "machine": machine(), "runs": [],
                              "settings": {"ttl_s": settings.ttl_s,
                                           "negative_ttl_s": settings.negative_ttl_s,
                                           "load_clients": settings.load_clients,
                                           "resolver": settings.resolver,
                                           "load_other_share": settings.load_other_share}}
    workdir = Path(tempfile.mkdtemp(prefix="dnsrace-repeat-"))
    for i in range(args.runs):
        print(f"=== run {i + 1} of {args.runs}", flush=True)
        run_dir = workdir / f"run{i + 1}"
        if args.kind == "demo":
            halves = [asyncio.run(run_mode(settings, mode, run_dir, args.rate))
                      for mode in ("legacy", "safe")]
            print(format_summary(halves), flush=True)
            result["runs"].append([mode_figures(r) for r in halves])
        elif args.kind == "run":
            scenario = load_file(args.scenario)
            modes: list[Mode] = args.mode or list(scenario.expect)
            outcomes = [asyncio.run(run_scenario(scenario, settings, mode, run_dir / mode,
                                                 quiet=True)) for mode in modes]
            result["runs"].append([outcome_figures(o) for o in outcomes])
        elif args.kind == "explore":
            result["runs"].append(run_rows())
        else:
            rows = run_matrix(load_file(args.scenario), settings, run_dir, only=args.only)
            print(format_table(rows), flush=True)
            result["runs"].append([{"row": row.name, **outcome_figures(o)} for row, o in rows])
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["summary"] = summary(result)
    return result


def repeat_command(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.runs <= 1000:
        print("dnsrace repeat: --runs must be between 1 and 1000", file=sys.stderr)
        return 2
    try:
        if args.kind in ("run", "matrix"):
            load_file(args.scenario)
    except ScenarioError as e:
        print(f"dnsrace repeat: {e}", file=sys.stderr)
        return 2
    fleet = fleet_args.prepare(args, settings, "demo" if args.kind == "demo" else "run")
    if fleet is None:
        return 2
    result = repeat(args, fleet)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    print(result["summary"])
    print(f"wrote {args.out}")
    return 0
