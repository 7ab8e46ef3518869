"""``dnsrace run SCENARIO --json``: the run's outcome as one JSON object on stdout.

One mode: the object is that mode's outcome.  Several modes: ``{"scenario": ..., "runs": [...]}``
with one outcome per mode.  Each outcome has ``resolver``, ``clients`` and ``failing``
(``peak_share``, ``ramp_s``, ``recovery_ramp_s``; null without a fleet), and the times on the
timeline's clock of ``empty_at_s`` (the first empty answer DNS polling saw), ``failing_90_at_s``,
``repair_at_s`` and ``recovered_at_s`` (see services/core/population.py, FleetEvents), with the
``ttl_s`` and ``negative_ttl_s`` to judge them by.  The cluster's progress
lines go nowhere; logs stay in the printed ``workdir``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from services.config import Settings
from services.core.population import FleetEvents
from services.tools.scenario import Outcome, Scenario, ScenarioError, load_file, run_scenario


def outcome_json(scenario: Scenario, outcome: Outcome, workdir: Path) -> dict[str, Any]:
    return {
        "scenario": scenario.name, "mode": outcome.mode, "ok": outcome.ok,
        "failures": outcome.failures,
        "resolver": outcome.resolver, "clients": outcome.clients,
        "failing": outcome.failing.as_json() if outcome.failing is not None else None,
        "requests": outcome.requests, "failed_requests": outcome.failed_requests,
        "failed_share": (round(outcome.failed_requests / outcome.requests, 4)
                         if outcome.requests else None),
        "empty_answers": outcome.empty_answers, "outage_s": round(outcome.outage_s, 3),
        "nodata_from_resolver_cache": outcome.nodata_from_cache,
        "stale_answers": outcome.stale_answers,
        **(outcome.events or FleetEvents(None, None, None, None)).as_json(),
        "nodata_from_resolver_cache_in_outage": outcome.nodata_from_cache_in_outage,
        "violations": sorted({v.invariant.name for v in outcome.violations}),
        "converged_after_s": (None if outcome.converged_after_s is None
                              else round(outcome.converged_after_s, 3)),
        "restarts": outcome.restarts, "workdir": str(workdir),
    }


def event_keys(settings: Settings) -> dict[str, int]:
    """The TTLs the event times are judged against (issue 19's must-holds)."""
    return {"ttl_s": settings.ttl_s, "negative_ttl_s": settings.negative_ttl_s}


def json_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        scenario = load_file(args.scenario)
    except ScenarioError as e:
        print(f"dnsrace: {e}", file=sys.stderr)
        return 2
    modes = args.mode or list(scenario.expect) or [settings.mode]
    workdir = Path(tempfile.mkdtemp(prefix=f"dnsrace-{scenario.name}-"))
    outcomes = [asyncio.run(run_scenario(scenario, settings, mode, workdir, quiet=True))
                for mode in modes]
    runs = [outcome_json(scenario, o, workdir) | event_keys(settings) for o in outcomes]
    result = runs[0] if len(runs) == 1 else {"scenario": scenario.name, "runs": runs}
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0 if all(o.ok for o in outcomes) else 1
