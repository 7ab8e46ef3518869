"""``dnsrace repeat explore``: README's explorer table, every row run at the cluster's window
(512) and at one endpoint at a time (1), each through ``dnsrace explore --json`` in a process
of its own, so the figures are the command's own output.

    dnsrace repeat explore --runs 1 --out bench/results/explorer.json
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

WINDOWS = (512, 1)


@dataclass(frozen=True)
class ExplorerRow:
    """One row of README's explorer table: what it runs and how its cell reads."""

    name: str
    args: tuple[str, ...]

    @property
    def command(self) -> str:
        return "dnsrace explore " + " ".join(self.args)


ROWS = (
    ExplorerRow("safe, random", ("--mode", "safe", "--schedules", "10000", "--workers", "2")),
    ExplorerRow("safe, exhaustive", ("--mode", "safe", "--strategy", "exhaustive",
                                     "--preemptions", "1", "--schedules", "100000",
                                     "--workers", "2")),
    ExplorerRow("legacy, random", ("--mode", "legacy", "--schedules", "2000", "--stop-after",
                                   "2000", "--workers", "2")),
    ExplorerRow("legacy, the outage", ("--mode", "legacy", "--invariants", "I1", "--seed",
                                       "1000", "--schedules", "6000", "--stop-after", "6000",
                                       "--workers", "2")),
)

CLI = "import sys; from services.tools.cli import main; sys.exit(main())"

KEPT = ("schedules", "violating_schedules", "by_invariant", "steps", "exhausted", "elapsed_s",
        "schedules_per_s")


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """What README's table shows of one ``dnsrace explore --json`` report."""
    out = {key: report[key] for key in KEPT}
    shortest = report.get("shortest")
    out["shortest_steps"] = shortest["steps"] if shortest else None
    out["shortest_choices"] = shortest["choices"] if shortest else None
    return out


def run_row(row: ExplorerRow, window: int) -> dict[str, Any]:
    argv = [sys.executable, "-c", CLI, "explore", *row.args, "--window", str(window), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    # The explorer exits 1 when a schedule violated an invariant: for legacy rows that is the
    # finding, not a failure of the run; anything it could not print as JSON is.
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"{row.command} --window {window} printed no JSON (exit "
                           f"{done.returncode}): {done.stderr.strip()[-400:]}") from e
    return {"row": row.name, "command": row.command, "window": window, "exit": done.returncode,
            **figures(report)}


def run_rows() -> list[dict[str, Any]]:
    results = []
    for row in ROWS:
        for window in WINDOWS:
            print(f"--- {row.name}, window {window}: {row.command}", flush=True)
            result = run_row(row, window)
            print(cell(result), flush=True)
            results.append(result)
    return results


def cell(r: dict[str, Any]) -> str:
    """One cell of the table, in the words README uses."""
    took = f"{r['elapsed_s']:.0f} s ({r['schedules_per_s']:.0f} schedules/s)"
    if r["row"].startswith("safe"):
        scope = " (all)" if r["exhausted"] else ""
        return (f"{r['schedules']:,} schedules{scope}, {r['steps']:,} steps, "
                f"**{r['violating_schedules']} violations**, {took}")
    if r["row"] == "legacy, the outage":
        return (f"{r['violating_schedules']:,} of {r['schedules']:,} empty the name; shortest "
                f"{r['shortest_steps']} steps, {took}")
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(r["by_invariant"].items()))
    return f"{r['violating_schedules']:,} of {r['schedules']:,} violate ({kinds}), {took}"


def table(results: list[dict[str, Any]]) -> str:
    """README's explorer table from one run of every row at both windows."""
    lines = ["| run | command | window 512 | window 1 |", "| --- | --- | --- | --- |"]
    for row in ROWS:
        by_window = {r["window"]: r for r in results if r["row"] == row.name}
        cells = " | ".join(cell(by_window[w]) if w in by_window else "-" for w in WINDOWS)
        lines.append(f"| {row.name} | `{row.command}` | {cells} |")
    return "\n".join(lines)
