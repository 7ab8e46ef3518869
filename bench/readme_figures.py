"""README's measured figures, drawn from the committed results of ``dnsrace repeat``.

    .venv/bin/python -m bench.readme_figures          # prints every block README quotes

The demo table is the first run of ``bench/results/demo.json`` and the sentence above it
summarises all of its runs; the matrix table is ``bench/results/matrix.json``; the explorer
table is the first run of ``bench/results/explorer.json`` (``dnsrace repeat explore``).
tests/test_readme_figures.py checks that README holds exactly these blocks.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from services.tools.repeat_explore import table as explorer_table

RESULTS = Path(__file__).resolve().parent / "results"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def demo_table(run: list[dict[str, Any]]) -> str:
    """One demo run, as 'dnsrace demo' prints its summary."""
    rows = [
        ("outage reproduced", lambda r: "yes" if r["reproduced"] else "no"),
        ("stale flips (I2)", lambda r: str(r["stale_flips"])),
        ("live trees deleted (I3)", lambda r: str(r["live_deletions"])),
        ("empty DNS answers seen (I1)", lambda r: str(r["empty_answers"])),
        ("DNS polls unanswered", lambda r: f"{r['unanswered_polls']} of {r['dns_polls']}"),
        ("time to empty after the race", lambda r: _s(r["time_to_empty_s"])),
        ("clients >= 90% failing after", lambda r: _s(r["time_to_failing_s"])),
        ("peak client failure ratio", lambda r: f"{r['failure_ratio_peak']:.0%}"),
        ("outage length", lambda r: _s(r["outage_s"])),
        ("recovery after repair", lambda r: _s(r["recovery_s"])),
        ("clients (resolver)", lambda r: f"{r.get('clients', 1)} ({r.get('resolver', 'stub')})"),
        ("fleet peak share failing", lambda r: "-" if r.get("fleet_peak_share") is None
         else f"{r['fleet_peak_share']:.0%}"),
        ("fleet ramp 10 -> 90 % failing", lambda r: _s(r.get("fleet_ramp_s"))),
        ("fleet recovery 90 -> 10 %", lambda r: _s(r.get("fleet_recovery_ramp_s"))),
        ("requests", lambda r: str(r["requests"])),
        ("failed requests", lambda r: str(r["failed_requests"])),
        ("rejected batches (4 s, by reason)", lambda r: ", ".join(
            f"{k} {v:.0f}" for k, v in r["rejected_while_broken"].items()) or "0"),
        ("wall time", lambda r: _s(r["wall_s"])),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':<{width}}  " + "  ".join(f"{r['mode']:<24}" for r in run)]
    for name, cell in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{cell(r):<24}" for r in run))
    return "\n".join(line.rstrip() for line in lines)


def matrix_table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'protections':<22} {'outage s':>8} {'empty answers':>13} "
              f"{'stale answers':>13} {'stale flips':>11} {'live trees deleted':>18} "
              f"{'converged':>9} {'failed requests':>15}")
    lines = [header, "-" * len(header)]
    for o in rows:
        converged = "yes" if o["converged_after_s"] is not None else "no"
        lines.append(f"{o['row']:<22} {o['outage_s']:>8.1f} {o['empty_answers']:>13} "
                     f"{o['stale_answers']:>13} {o['stale_flips']:>11} "
                     f"{o['live_deletions']:>18} {converged:>9} {o['failed_requests']:>15}")
    return "\n".join(lines)


def _span(values: Iterable[int]) -> str:
    counts = list(values)
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def nemesis_summary(result: dict[str, Any]) -> str:
    """Every run of the nemesis in safe mode, in one sentence."""
    runs = [o for run in result["runs"] for o in run]
    met = sum(1 for o in runs if o["ok"])
    failed = [o["failed_requests"] / o["requests"] for o in runs if o["requests"]]
    return (f"{met} of {len(runs)} runs of 120 s met every expectation: "
            f"{sum(o['empty_answers'] for o in runs)} empty and "
            f"{sum(o['stale_answers'] for o in runs)} stale answers, "
            f"{sum(len(o['violations']) for o in runs)} violations, "
            f"{_span(len(o['restarts']) for o in runs)} processes killed or restarted per run "
            f"(all by the supervisor), converged "
            f"{max(o['converged_after_s'] for o in runs):.2f} s or less after the last fault; "
            f"{min(failed):.1%}-{max(failed):.1%} of client requests failed, while the load "
            f"balancers were killed or unhealthy (no answer was empty or stale)")


def blocks(results: Path = RESULTS) -> dict[str, str]:
    """Every README block, by name, from the committed results."""
    out = {}
    demo = results / "demo.json"
    if demo.exists():
        result = json.loads(demo.read_text())
        out["demo summary"] = result["summary"]
        out["demo table"] = demo_table(result["runs"][0])
    matrix = results / "matrix.json"
    if matrix.exists():
        out["matrix table"] = matrix_table(json.loads(matrix.read_text())["runs"][0])
    nemesis = results / "nemesis.json"
    if nemesis.exists():
        out["nemesis summary"] = nemesis_summary(json.loads(nemesis.read_text()))
    explorer = results / "explorer.json"
    if explorer.exists():
        out["explorer table"] = explorer_table(json.loads(explorer.read_text())["runs"][0])
    return out


def main() -> int:
    for name, text in blocks().items():
        print(f"--- {name}\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
