"""The operator commands of the CLI: fault, status, repair, race, check.

Each talks to a running cluster (Redis, the control API, the DNS server), prints what a person
needs, and turns every expected failure into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from services.config import Settings
from services.control.client import ControlClient, ControlError
from services.core import checker, events, names
from services.report.render import write_report
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import redis_client
from services.store import history
from services.store.automation import AutomationSwitch
from services.store.plans import PlanStore
from services.store.zone import ZoneStore
from services.tools import operator
from services.tools.matrix import format_table, run_matrix
from services.tools.race import RaceError, run_race
from services.tools.scenario import Scenario, ScenarioError, format_outcome, load_file, run_scenario
from services.tools.soak import FAULT_TYPES, run_soak


def _run(settings: Settings, body: Callable[[Any], Awaitable[int]]) -> int:
    async def main() -> int:
        client = redis_client(settings, retries=2)
        try:
            return await body(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except RedisError as e:
        print(f"dnsrace: Redis at {settings.effective_redis_url} is not reachable ({e}); "
              "is the cluster up ('dnsrace up')?", file=sys.stderr)
    except ControlError as e:
        print(f"dnsrace: {e}", file=sys.stderr)
    except RaceError as e:
        print(f"dnsrace: the race did not complete: {e}", file=sys.stderr)
    return 1


def _fault_line(fault: dict[str, Any]) -> str:
    params = " ".join(f"{k}={v}" for k, v in fault.get("params", {}).items())
    return (f"{fault['id']}  {fault['type']:<14} {fault['target']:<10} until "
            f"{fault['expires_at']}  {params}").rstrip()


def fault_command(args: argparse.Namespace, settings: Settings) -> int:
    control = ControlClient.for_settings(settings)

    async def body(_: Any) -> int:
        if args.action == "add":
            fault = await control.add(args.type, args.target, args.duration, dict(args.param))
            print(_fault_line(fault))
        elif args.action == "list":
            faults = await control.active()
            for fault in faults:
                print(_fault_line(fault))
            if not faults:
                print("no active fault")
        elif args.action == "rm":
            print("ended", _fault_line(await control.remove(args.id)))
        else:
            ended = await control.reset()
            print(f"ended {len(ended)} fault(s)")
        return 0

    return _run(settings, body)


def _endpoints(settings: Settings, everything: bool) -> tuple[str, ...]:
    all_endpoints = names.endpoints(settings.cells)
    return all_endpoints if everything else all_endpoints[:6]


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    async def body(client: Any) -> int:
        rows = await operator.collect_status(
            ZoneStore(client, clock=WALL_CLOCK), PlanStore(client),
            _endpoints(settings, args.all or args.json),
            settings.dns_host, settings.dns_port)
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            print(operator.format_status(rows))
        return 0

    return _run(settings, body)


def repair_command(args: argparse.Namespace, settings: Settings) -> int:
    async def body(client: Any) -> int:
        actions = await operator.repair(ZoneStore(client, clock=WALL_CLOCK), PlanStore(client),
                                        names.endpoints(settings.cells))
        if not actions:
            print("nothing to repair: every endpoint names an existing tree of the newest plan")
        else:  # in the history, for C1 (leases must recover after the DNS repair)
            await history.RedisHistory(client, source="operator", clock=WALL_CLOCK).record(
                events.OperatorAction(action="dns_repair", target=names.REGIONAL,
                                      detail=f"{len(actions)} endpoint(s) repaired"))
        for a in actions:
            print(f"{a.outcome:<9} {a.endpoint}: plan {a.before} -> plan {a.after}"
                  + (" (its tree was missing)" if a.tree_was_missing else ""))
        return 1 if any(a.outcome.startswith("gave up") for a in actions) else 0

    return _run(settings, body)


def race_command(args: argparse.Namespace, settings: Settings) -> int:
    async def body(client: Any) -> int:
        print(f"racing the enactors (mode {settings.mode}); every step waits on the history")
        report = await run_race(ControlClient.for_settings(settings), history.RedisHistory(client),
                                settings.cleanup_age, settings.plan_interval_s,
                                observe_s=args.observe, on_step=lambda s: print("  " + s))
        print(report.to_text().splitlines()[-1])
        return 0

    return _run(settings, body)


async def switch_automation(client: Any, on: bool) -> None:
    """What 'dnsrace automation on|off' does: the switch, and a note in the history."""
    await AutomationSwitch(client).set(on)
    await history.RedisHistory(client, source="operator", clock=WALL_CLOCK).record(
        events.AutomationSwitched(on=on))


def automation_command(args: argparse.Namespace, settings: Settings) -> int:
    async def body(client: Any) -> int:
        on = args.state == "on"
        await switch_automation(client, on)
        print("automation on: the enactors apply plans again" if on else
              "automation off: the enactors finish the round under way and apply nothing "
              "more; 'dnsrace automation on' resumes")
        return 0

    return _run(settings, body)


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    async def body(client: Any) -> int:
        events = [e for _, e in await history.RedisHistory(client).read()
                  if e.at_ms >= args.since_ms]
        violations = checker.check(events)
        print(checker.format_report(violations, events))
        return 1 if violations else 0

    return _run(settings, body)


def _scenario(path: Path) -> Scenario | None:
    """The scenario file, or None after saying on stderr what is wrong with it."""
    try:
        return load_file(path)
    except ScenarioError as e:
        print(f"dnsrace: {e}", file=sys.stderr)
        return None


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile

    scenario = _scenario(args.scenario)
    if scenario is None:
        return 2
    modes = args.mode or list(scenario.expect) or [settings.mode]
    workdir = Path(tempfile.mkdtemp(prefix=f"dnsrace-{scenario.name}-"))
    outcomes = []
    for mode in modes:
        outcome = asyncio.run(run_scenario(scenario, settings, mode, workdir))
        outcomes.append(outcome)
        print(format_outcome(scenario, outcome))
    print(f"logs and data in {workdir}")
    records = [o.record for o in outcomes if o.record]
    if records:
        print(f"report: {write_report('run', records)}")
    return 0 if all(o.ok for o in outcomes) else 1


def matrix_command(args: argparse.Namespace, settings: Settings) -> int:
    scenario = _scenario(args.scenario)
    if scenario is None:
        return 2
    results = run_matrix(scenario, settings, only=args.only)
    print(format_table(results))
    broken = [o for _, o in results if o.failures and not o.requests]
    return 1 if broken else 0


def soak_command(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the soak shows what the mode promises: safe clean, legacy caught."""
    import tempfile

    types = tuple(args.faults.split(",")) if args.faults else FAULT_TYPES
    unknown = set(types) - set(FAULT_TYPES)
    if unknown or not 0 < args.duration <= 24 * 3600:
        print(f"dnsrace: --faults takes {', '.join(FAULT_TYPES)}; --duration 0 < s <= 86400",
              file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="dnsrace-soak-"))
    report = asyncio.run(run_soak(settings, args.mode, args.duration, args.seed, workdir,
                                  types))
    print(report.to_text())
    print(f"logs and data in {workdir}")
    clean = (not report.violations and report.empty_answers == 0
             and report.stale_answers == 0 and report.converged_after_s is not None)
    if report.problems:
        return 1
    return 0 if clean == (args.mode == "safe") else 1
