"""``dnsrace matrix``: the race scenario once per protection set, on the real cluster.

Rows: no protection (legacy), each protection alone, all of them. Columns: what a user sees
(outage seconds, empty answers) and what the history shows (stale flips for I2, live trees
deleted for I3), and whether every endpoint converged to the newest plan afterwards (I4).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from services.config import DNS_PROTECTIONS, Mode, Protection, Settings
from services.report.render import write_report
from services.tools.scenario import Outcome, Scenario, run_scenario


@dataclass(frozen=True)
class Row:
    name: str
    mode: Mode
    protections: tuple[Protection, ...]


def rows() -> list[Row]:
    """The race's matrix: the DNS protections, each alone and all together (the cascade's
    ``queue_throttle`` changes nothing in the DNS race, and has its own runs)."""
    return ([Row("none (legacy)", "legacy", ())]
            + [Row(f"{p} alone", "safe", (p,)) for p in DNS_PROTECTIONS]
            + [Row("all (safe)", "safe", DNS_PROTECTIONS)])


def format_table(results: list[tuple[Row, Outcome]]) -> str:
    header = (f"{'protections':<22} {'outage s':>8} {'empty answers':>13} "
              f"{'stale answers':>13} {'stale flips':>11} {'live trees deleted':>18} "
              f"{'converged':>9} {'failed requests':>15}")
    lines = [header, "-" * len(header)]
    for row, o in results:
        converged = "yes" if o.converged_after_s is not None else "no"
        lines.append(f"{row.name:<22} {o.outage_s:>8.1f} {o.empty_answers:>13} "
                     f"{o.stale_answers:>13} {o.stale_flips:>11} {o.live_deletions:>18} "
                     f"{converged:>9} "
                     f"{o.failed_requests:>15}" + ("  !! " + "; ".join(o.failures)
                                                   if o.failures and not o.requests else ""))
    return "\n".join(lines)


def run_matrix(scenario: Scenario, settings: Settings, workdir: Path | None = None,
               only: list[str] | None = None) -> list[tuple[Row, Outcome]]:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="dnsrace-matrix-"))
    results = []
    for i, row in enumerate(rows()):
        if only and not any(o in row.name for o in only):
            continue
        print(f"--- {row.name}", flush=True)
        row_settings = settings.replace(protections=row.protections)
        outcome = asyncio.run(run_scenario(scenario, row_settings, row.mode,
                                           workdir / f"row{i}", quiet=True))
        results.append((row, outcome))
    records = [o.record.named(row.name) for row, o in results if o.record]
    if records:
        print(f"report: {write_report('matrix', records)}", flush=True)
    return results
