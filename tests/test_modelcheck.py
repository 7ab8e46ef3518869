"""Evidence from two sides: Spin on the Promela model, and the explorer on the real code.

Spin covers every interleaving of a copy (models/dnsrace.pml); the explorer runs the real
enactors but samples schedules. The tests hold them to the same table, cell by cell, and
play every Spin counterexample against the real code: it must break the same invariant
there, and the legacy outage must empty the regional name.

Pure tiers first (reading trails, which steps may trade places, judging a round-trip), then
the command without Spin, then Spin itself (skipped with the reason where it is missing).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from services.core import events, names
from services.core.invariants import Invariant
from services.core.verdicts import VerdictMap, protection_set_name
from services.explorer import command as explorer_command
from services.explorer.search import MATRIX_ROWS
from services.explorer.trace import LineKind, trace
from services.modelcheck.spin import Cell, SearchIncomplete, Sizes, check_cell
from services.modelcheck.trail import (
    ACTOR_NAMES,
    Move,
    explorer_choices,
    explorer_steps,
    predecessors,
    read_trail,
    tell,
)
from services.modelcheck.translate import Judged, TrailDiverged, judge
from services.runtime.redis_server import EmbeddedRedis
from services.tools import cli
from services.tools.spin_trails import replay_trail
from tests.conftest import REPO, require_tool

E, FIPS = names.REGIONAL, names.FIPS
EXPLORER_SCHEDULES = 300
"""A cell of the explorer's matrix stops at its first counterexample; the slowest to find,
legacy I1 (the empty name), comes at schedule 197 with seed 0. Every cell that holds costs
all 300 (about 4 s each)."""
CELL_BUDGET_S = 60.0
WRITES = {LineKind.PUBLISH: "publish", LineKind.FLIP: "commit", LineKind.STALE_FLIP: "commit",
          LineKind.DELETE: "delete", LineKind.LIVE_DELETE: "delete"}
WHOLE_BUDGET_S = 600.0

# The shortest legacy I1 counterexample Spin finds (breadth first): the October 2025 race.
OUTAGE = """\
MC 0 publish 1
MC 3 newest 1
MC 3 check 1 0
MC 0 publish 2
MC 0 publish 3
MC 0 publish 4
MC 2 newest 4
MC 2 check 4 0
MC 2 read 0 4
MC 2 commit 0 4 0 0
MC 3 read 0 1
MC 3 commit 0 1 4 4
MC 2 read 1 4
MC 2 commit 1 4 0 0
MC 2 trees
MC 2 refs
MC 2 delete 0 1""".splitlines()

EXPECTED: VerdictMap = {
    "none (legacy)": {"I1": "breaks", "I2": "breaks", "I3": "breaks"},
    "fenced_commit": {"I1": "holds", "I2": "holds", "I3": "breaks"},
    "safe_cleanup": {"I1": "holds", "I2": "breaks", "I3": "holds"},
    "plan_validation": {"I1": "breaks", "I2": "breaks", "I3": "breaks"},
    "self_repair": {"I1": "breaks", "I2": "breaks", "I3": "breaks"},
    "all": {"I1": "holds", "I2": "holds", "I3": "holds"},
}
"""What both checkers found (README, "Two checkers, one table"); a change to either side
that moves a cell must say why here."""


# -- trails, read back (no Spin) ------------------------------------------------------------

def test_a_trail_reads_back_in_the_incidents_words() -> None:
    steps = read_trail(OUTAGE)
    told = tell(steps, endpoints=2)
    assert told[11] == (f"step  12  use1-az4 flips {E} back to plan 1: it named plan 4 "
                        "(a stale plan; rollback names plan 4)")
    assert told[-1] == f"step  17  use1-az2 clean-up deletes {names.tree_name(1, E)}"
    # Reading the newest plan is two round-trips in the real code: generation, then body.
    assert explorer_choices(steps) == "0333000222223322222"


def test_steps_on_different_endpoints_may_trade_places_but_not_reads_and_writes() -> None:
    plan = explorer_steps(read_trail(OUTAGE))
    before = predecessors(plan, endpoints=2)
    at = {(s.step.actor, s.move, s.step.endpoint, s.step.generation): i
          for i, s in enumerate(plan)}
    b_flips_regional = at[(2, Move.COMMIT, 0, 4)]
    a_reads_regional = at[(3, Move.READ, 0, 1)]
    a_flips_regional = at[(3, Move.COMMIT, 0, 1)]
    b_reads_fips = at[(2, Move.READ, 1, 4)]
    b_lists_trees = at[(2, Move.TREES, -1, 0)]
    assert b_flips_regional in before[a_reads_regional]  # A must see B's flip
    assert a_flips_regional not in before[b_reads_fips]  # FIPS does not care about it
    assert a_flips_regional in before[b_lists_trees]  # clean-up must see the stale tree
    assert at[(3, Move.CHECK, -1, 1)] in before[b_flips_regional]  # A's check saw plan 0


def test_a_round_trip_is_judged_by_what_the_real_code_recorded() -> None:
    plan = explorer_steps(read_trail(OUTAGE))
    flip = next(s for s in plan if s.step.move is Move.COMMIT and s.step.actor == 3)
    read = next(s for s in plan if s.move is Move.READ and s.step.actor == 3)
    committed = events.BatchCommitted(endpoint=E, generation=1, previous=4, rollback=4,
                                      serial=9, repaired=False)
    assert judge(flip, [committed], (E, FIPS)) is Judged.TOOK
    held = events.LockLost(endpoint=E, generation=1, reason="lock_held", backoff_s=0.05)
    assert judge(read, [held], (E, FIPS)) is Judged.WAITED  # it reads again later
    with pytest.raises(TrailDiverged, match="was to commit"):
        judge(flip, [events.BatchCommitted(endpoint=E, generation=1, previous=2, rollback=2,
                                           serial=9, repaired=False)], (E, FIPS))


def test_both_checkers_name_the_explorers_protection_sets_alike() -> None:
    assert [protection_set_name(mode, p) for mode, p in MATRIX_ROWS] == list(EXPECTED)


def test_without_spin_the_command_says_how_to_install_it(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    result = subprocess.run([sys.executable, "-m", "services.tools.cli", "model-check"],
                            capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**clean, "PATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip() == ("dnsrace model-check: spin is not installed: "
                                     "apt-get install spin (Debian package, 6.5 or newer)")


# -- Spin ----------------------------------------------------------------------------------

def run_cli(main: Any, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def spin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``dnsrace model-check --json``: every cell, exhaustively; the figures from --save."""
    require_tool("spin")
    require_tool("gcc")
    saved = tmp_path_factory.mktemp("spin") / "model-check.json"
    code, out = run_cli(cli.main, ["model-check", "--json", "--save", str(saved)])
    assert code == 0, out  # every protection on holds every invariant
    return {"verdicts": json.loads(out), **json.loads(saved.read_text())}


@pytest.fixture(scope="module")
def explorer(redis_server: EmbeddedRedis) -> VerdictMap:
    """``dnsrace explore --matrix --workers 2 --json`` on the real code, at CI size."""
    with mock.patch.dict(os.environ, {explorer_command.REDIS_URL_ENV: redis_server.url}):
        code, out = run_cli(explorer_command.main, [
            "--matrix", "--schedules", str(EXPLORER_SCHEDULES), "--seed", "0", "--workers", "2",
            "--json"])
    assert code == 0, out
    verdicts: VerdictMap = json.loads(out)
    return verdicts


def test_spin_searches_every_cell_exhaustively_within_a_minute(spin: dict[str, Any]) -> None:
    cells = spin["cells"]
    assert len(cells) == len(MATRIX_ROWS) * 3
    for cell in cells:
        where = f"{cell['protections']} {cell['invariant']}"
        assert cell["elapsed_s"] < CELL_BUDGET_S, where
        assert cell["states"] > 1000 and cell["depth"] < 200, where
        if cell["verdict"] == "holds":
            assert not cell["trail"], where
        else:
            assert cell["trail"] and cell["assertion"], where
    assert spin["elapsed_s"] < WHOLE_BUDGET_S
    assert spin["spin"].startswith("Spin Version 6.")


def test_spin_and_the_explorer_agree_on_every_cell(spin: dict[str, Any],
                                                   explorer: VerdictMap) -> None:
    ours = spin["verdicts"]
    disagree = [f"{row} {inv}: Spin {ours[row][inv]}, explorer {explorer[row][inv]}"
                for row in ours for inv in ours[row] if ours[row][inv] != explorer[row][inv]]
    assert not disagree, disagree
    assert ours == explorer == EXPECTED


def broken_cells(spin: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in spin["cells"] if c["verdict"] == "breaks"]


async def test_every_spin_counterexample_breaks_the_same_invariant_in_the_real_code(
        spin: dict[str, Any], redis_server: EmbeddedRedis) -> None:
    cells = broken_cells(spin)
    assert len(cells) == 11
    for found in cells:
        cell = Cell(found["mode"], tuple(found["active"]), Invariant(found["invariant"]))
        played = await replay_trail(redis_server.url, cell, found["trail"], Sizes())
        where = f"{found['protections']} {found['invariant']}"
        # The explorer's own replay of the choice string, without the translating chooser:
        assert [v.invariant for v in played.record.violations] == [cell.invariant], where
        last = read_trail(found["trail"])[-1]
        endpoint = names.endpoints(0)[last.endpoint]
        assert played.record.violations[0].endpoint == endpoint, where
        assert played.record.choices == played.translation.choices, where


async def test_the_legacy_outage_from_spin_empties_the_name_in_the_real_code(
        spin: dict[str, Any], redis_server: EmbeddedRedis) -> None:
    legacy = next(c for c in spin["cells"]
                  if (c["protections"], c["invariant"]) == ("none (legacy)", "I1"))
    assert legacy["trail"] == OUTAGE  # the race of October 2025, in 17 steps
    played = await replay_trail(redis_server.url, Cell("legacy", (), Invariant.I1), OUTAGE,
                                Sizes())
    lines = trace(played.record)
    stale = [line for line in lines if line.kind is LineKind.STALE_FLIP]
    deleted = [line for line in lines if line.kind is LineKind.LIVE_DELETE]
    assert [(s.actor, s.endpoint, s.generation) for s in stale] == [("use1-az4", E, 1)]
    assert [(d.actor, d.endpoint, d.generation) for d in deleted] == [("use1-az2", E, 1)]
    assert lines[-1].text == (f"I1: {E} answers no address: its alias names "
                              f"{names.tree_name(1, E)}, which does not exist")
    # Each endpoint's writes (and the planner's) by the same actors in the trail's order
    # (writes to different endpoints may trade places) ...
    shown = names.endpoints(0)
    done = [(line.endpoint, line.actor, WRITES[line.kind], line.generation) for line in lines
            if line.kind in WRITES]
    model = [(shown[s.endpoint] if s.endpoint >= 0 else "", ACTOR_NAMES[s.actor], str(s.move),
              s.generation) for s in read_trail(OUTAGE) if s.writes]
    for endpoint in ("", E, FIPS):
        assert [w for w in done if w[0] == endpoint] == [w for w in model if w[0] == endpoint]
    # ... and all that was added for the lock lease: use1-az4 finding use1-az2's lock still
    # held (and reading again), and reads by use1-az1, which has no part in the trail.
    lost = [line for line in lines if line.kind is LineKind.LOCK_LOST]
    assert lost and {(line.actor, line.endpoint) for line in lost} == {("use1-az4", E)}
    assert played.translation.waited == len(lost) + played.record.choices.count(1)


def test_a_search_cut_short_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    require_tool("spin")
    with pytest.raises(SearchIncomplete, match="search depth too small"):
        check_cell(Cell("safe", (), Invariant.I1), Sizes(), tmp_path, max_depth=20)


def test_the_models_shortcut_for_what_an_enactor_read_is_exact(tmp_path: Path) -> None:
    """The model keeps no copy of the alias and rollback an enactor read, because its batch
    commits only if nobody committed on that endpoint since; -DFULL_VIEW keeps the copy and
    asserts they are equal, in every reachable state."""
    require_tool("spin")
    for r, (mode, protections) in enumerate((("legacy", ()), ("safe", ("fenced_commit",)))):
        searched = check_cell(Cell(mode, protections, None), Sizes(), tmp_path / str(r),
                              extra=["-DFULL_VIEW"], breadth_first=False)
        assert searched.holds and searched.states > 1_000_000, searched
