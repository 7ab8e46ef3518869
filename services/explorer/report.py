"""What ``dnsrace explore`` prints: results, counterexamples as stories, the protection matrix.

A counterexample file (``--save``, and ``tests/fixtures/legacy_counterexample.json``) holds
the configuration, the choice sequence that replays it, the random seed that found it, and
its trace in words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.config import DNS_PROTECTIONS
from services.explorer.search import Explored, Found, Strategy, decode, encode
from services.explorer.trace import trace
from services.explorer.world import ACTORS, ExploreConfig, ScheduleRecord


def counterexample_json(config: ExploreConfig, record: ScheduleRecord,
                        seed: int | None = None) -> dict[str, Any]:
    return {
        "config": config.to_json(),
        "choices": encode(record.choices),
        "seed": seed,
        "steps": record.steps,
        "violations": [v.text for v in record.violations],
        "trace": [str(line) for line in trace(record)],
    }


def load_replay(spec: str, fallback: ExploreConfig) -> tuple[ExploreConfig, tuple[int, ...]]:
    """A replay file's config and choices, or ``spec`` itself as choices under ``fallback``."""
    path = Path(spec)
    if path.is_file():
        data = json.loads(path.read_text())
        return ExploreConfig.from_json(data["config"]), decode(data["choices"])
    return fallback, decode(spec)


# -- output --------------------------------------------------------------------------------

def _describe(config: ExploreConfig) -> str:
    on = ", ".join(config.active_protections) or "no protections"
    return (f"{config.mode} ({on}); {config.plans} plans, {config.endpoints} endpoints, "
            f"window {config.window}, clean-up age {config.cleanup_age}; "
            f"actors {', '.join(ACTORS)}; stop at {','.join(config.invariants)}")


def _replay_hint(config: ExploreConfig, found: Found) -> list[str]:
    protections = (f" --protections {','.join(config.active_protections)}"
                   if config.mode == "safe" else "")
    base = (f"dnsrace explore --mode {config.mode}{protections} --plans {config.plans} "
            f"--endpoints {config.endpoints} --window {config.window} "
            f"--cleanup-age {config.cleanup_age} "
            f"--invariants {','.join(config.invariants)}")
    hints = [f"  {base} --replay {found.choices}"]
    if found.seed is not None:
        hints.append(f"  {base} --strategy random --seed {found.seed} --schedules 1")
    return hints


def explored_json(result: Explored) -> dict[str, Any]:
    shortest = None
    if result.shortest is not None:
        shortest = counterexample_json(result.config, result.shortest.record,
                                       result.shortest.seed)
        shortest["trace_lines"] = [line.to_json() for line in trace(result.shortest.record)]
    return {
        "config": result.config.to_json(),
        "strategy": result.strategy,
        "schedules": result.schedules,
        "violating_schedules": result.violating,
        "by_invariant": dict(sorted(result.by_invariant.items())),
        "bounded_schedules": result.bounded,
        "steps": result.steps,
        "exhausted": result.exhausted,
        "elapsed_s": round(result.elapsed_s, 3),
        "schedules_per_s": round(result.schedules_per_s, 1),
        "shortest": shortest,
    }


def print_explored(result: Explored) -> None:
    print(f"explored {_describe(result.config)}")
    exhausted = ""
    if result.strategy is Strategy.EXHAUSTIVE:
        exhausted = " (every schedule within the bound)" if result.exhausted else \
            " (stopped at --schedules before the bound was exhausted)"
    print(f"{result.schedules} {result.strategy} schedules{exhausted}, {result.steps} steps, "
          f"in {result.elapsed_s:.1f} s ({result.schedules_per_s:.0f} schedules/s); "
          f"{result.bounded} hit the step bound")
    if result.shortest is None:
        print(f"0 violations: {', '.join(result.config.invariants)} held in every schedule")
        return
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.by_invariant.items()))
    print(f"{result.violating} schedules violated an invariant ({counts})")
    found = result.shortest
    print(f"shortest counterexample: {found.record.steps} steps; replay it with")
    for hint in _replay_hint(result.config, found):
        print(hint)
    for line in trace(found.record):
        print(f"  {line}")
    first = {str(v.invariant) for v in found.violations}
    if len(result.config.invariants) > 1 and first == {"I2"}:
        print("a schedule stops at its first violation; to see a stale flip go on to empty "
              "the name, explore with --invariants I1")


def print_replay(config: ExploreConfig, record: ScheduleRecord) -> None:
    print(f"replayed {record.steps} steps of {_describe(config)}")
    for line in trace(record):
        print(f"  {line}")
    if not record.violations:
        print("no violation: the schedule ran to its end")


def _matrix_cell(result: Explored) -> str:
    if result.shortest is None:
        return f"holds ({result.schedules})"
    return f"breaks ({result.shortest.record.steps} steps, #{result.schedules})"


def print_matrix(cells: list[Explored]) -> None:
    """One row per protection set, one column per invariant: holds, or where it broke."""
    rows: dict[str, dict[str, str]] = {}
    for cell in cells:
        config = cell.config
        label = ("none (legacy)" if config.mode == "legacy" else
                 "all" if len(config.active_protections) == len(DNS_PROTECTIONS) else
                 ",".join(config.active_protections))
        rows.setdefault(label, {})[str(config.invariants[0])] = _matrix_cell(cell)
    columns = sorted({k for row in rows.values() for k in row})
    total = sum(c.schedules for c in cells)
    elapsed = sum(c.elapsed_s for c in cells)
    print(f"each protection alone, one invariant at a time ({cells[0].strategy}, at most "
          f"{max(c.schedules for c in cells)} schedules a cell, {total} in {elapsed:.1f} s); "
          "'#n': the schedule that broke it")
    print(f"{'protections':<18}" + "".join(f"{c:<28}" for c in columns))
    for label, row in rows.items():
        print(f"{label:<18}" + "".join(f"{row.get(c, '-'):<28}" for c in columns))
