"""The protection matrix by Spin: every protection set of the explorer's matrix, every invariant.

The rows are handed in (the explorer's ``MATRIX_ROWS``, read by the CLI: this package may not
import the explorer), so both checkers always judge the same protection sets. The table has
the shape of ``dnsrace explore --matrix``; the JSON is the shared
:data:`~services.core.verdicts.VerdictMap`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.config import Mode, Protection
from services.core.invariants import ALL_INVARIANTS, Invariant
from services.core.verdicts import VerdictMap, protection_set_name, verdict_map
from services.modelcheck.spin import MAX_DEPTH, MODEL, Cell, Searched, Sizes, check_cell

Row = tuple[Mode, tuple[Protection, ...]]
DEFAULT_SIZES = Sizes()
Progress = Callable[[Searched], None]


@dataclass
class Checked:
    """Every cell of one model-check run, in row order, invariants in order within a row."""

    sizes: Sizes
    cells: list[Searched] = field(default_factory=list)
    elapsed_s: float = 0.0

    def verdicts(self) -> VerdictMap:
        return verdict_map((s.cell.mode, s.cell.active, s.cell.invariant, not s.holds)
                           for s in self.cells if s.cell.invariant is not None)


def parallel_searches() -> int:
    """Cells searched at once: one per CPU this process may use, at most 2 (each search is
    one single-threaded verifier with its own state store)."""
    usable = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)
    return max(1, min(2, usable))


def check_matrix(rows: Sequence[Row], sizes: Sizes = DEFAULT_SIZES,
                 invariants: Sequence[Invariant] = ALL_INVARIANTS, *, model: Path = MODEL,
                 max_depth: int = MAX_DEPTH, progress: Progress | None = None,
                 extra: Sequence[str] = (), workers: int | None = None) -> Checked:
    """Each row against each invariant alone (each cell is one process), ``workers`` cells at
    once (:func:`parallel_searches` by default); the cells and ``progress`` in row order."""
    checked = Checked(sizes)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dnsrace-spin-") as tmp:
        jobs = [(Cell(mode, protections, invariant), Path(tmp) / f"{r}-{invariant}")
                for r, (mode, protections) in enumerate(rows) for invariant in invariants]
        with ThreadPoolExecutor(workers or parallel_searches()) as pool:
            for searched in pool.map(lambda job: check_cell(job[0], sizes, job[1], model,
                                                            max_depth, extra), jobs):
                checked.cells.append(searched)
                if progress is not None:
                    progress(searched)
    checked.elapsed_s = time.perf_counter() - started
    return checked


def cell_text(searched: Searched) -> str:
    """``holds`` or ``breaks (N steps)``, then states stored and seconds."""
    verdict = "holds" if searched.holds else f"breaks ({searched.steps} steps)"
    return f"{verdict}; {searched.states:,} states, {searched.elapsed_s:.1f} s"


def print_checked(checked: Checked, version: str) -> None:
    """The table of ``dnsrace explore --matrix``: a row per protection set, a column per
    invariant."""
    sizes = checked.sizes
    rows: dict[str, dict[str, str]] = {}
    for searched in checked.cells:
        cell = searched.cell
        rows.setdefault(protection_set_name(cell.mode, cell.active), {})[
            str(cell.invariant)] = cell_text(searched)
    columns = sorted({k for row in rows.values() for k in row})
    states = sum(s.states for s in checked.cells)
    print(f"each protection alone, one invariant at a time (Spin, exhaustive: every reachable "
          f"state; {states:,} states in {checked.elapsed_s:.1f} s); {sizes.enactors} enactors, "
          f"{sizes.plans} plans, {sizes.endpoints} endpoints, clean-up age "
          f"{sizes.cleanup_age}; 'N steps': the shortest counterexample")
    print(f"{'protections':<18}" + "".join(f"{c:<42}" for c in columns))
    for label, row in rows.items():
        print(f"{label:<18}" + "".join(f"{row.get(c, '-'):<42}" for c in columns))
    print(version.splitlines()[0] if version else "")


def checked_json(checked: Checked, version: str) -> dict[str, Any]:
    """The verdict map, and beside it how each cell was searched (``--json --details``)."""
    return {
        "verdicts": checked.verdicts(),
        "spin": version,
        "sizes": vars(checked.sizes),
        "elapsed_s": round(checked.elapsed_s, 1),
        "cells": [{
            "protections": protection_set_name(s.cell.mode, s.cell.active),
            "mode": s.cell.mode, "active": list(s.cell.active),
            "invariant": str(s.cell.invariant),
            "verdict": "holds" if s.holds else "breaks",
            "states": s.states, "transitions": s.transitions, "depth": s.depth,
            "memory_mb": s.memory_mb, "pan_s": s.pan_s, "elapsed_s": round(s.elapsed_s, 2),
            "assertion": s.assertion, "trail": s.trail,
        } for s in checked.cells],
    }
