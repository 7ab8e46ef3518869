"""Scenarios and one matrix row, end to end on a fresh real cluster each (as 'dnsrace run'
and 'dnsrace matrix --only fenced_commit' run them), their expectations asserted.

The expensive tests of the suite: each brings a whole cluster up under load. Short
durations, but every expectation of the scenario file is judged, not a subset.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from services.config import Mode
from services.core import events
from services.tools.matrix import run_matrix
from services.tools.nemesis import KINDS
from services.tools.scenario import load_file, parse, run_scenario
from tests.conftest import cluster_settings

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.mark.parametrize("mode", ["legacy", "safe"])
def test_race_toml_meets_its_expectations(tmp_path: Path, mode: Mode) -> None:
    scenario = load_file(SCENARIOS / "race.toml")
    outcome = asyncio.run(run_scenario(scenario, cluster_settings(tmp_path), mode,
                                       tmp_path / "run", quiet=True))
    assert outcome.ok, outcome.failures
    if mode == "legacy":  # the name went empty, and the history shows why
        assert outcome.empty_answers > 0 and outcome.stale_flips > 0
        assert outcome.live_deletions > 0
    else:
        assert outcome.empty_answers == 0 and outcome.stale_answers == 0
        assert outcome.failed_requests == 0 and outcome.converged_after_s is not None


def test_lb_failure_toml_meets_its_expectations(tmp_path: Path) -> None:
    scenario = load_file(SCENARIOS / "lb_failure.toml")
    outcome = asyncio.run(run_scenario(scenario, cluster_settings(tmp_path), "safe",
                                       tmp_path / "run", quiet=True))
    assert outcome.ok, outcome.failures
    assert outcome.requests > 0 and outcome.empty_answers == 0


def test_a_short_nemesis_keeps_safe_correct_through_every_fault_kind(tmp_path: Path) -> None:
    # nemesis.toml with its 120 s cut to 25 s (another seed): every kind still fires.
    text = (SCENARIOS / "nemesis.toml").read_text()
    text = re.sub(r"duration_s = 120", "duration_s = 25", text)
    text = re.sub(r"seed = \d+", "seed = 3", text)
    scenario = parse(text, "nemesis (25 s)")
    outcome = asyncio.run(run_scenario(scenario, cluster_settings(tmp_path), "safe",
                                       tmp_path / "run", quiet=True))
    assert outcome.ok, outcome.failures
    assert outcome.record is not None
    started = {e.type for e in outcome.record.events if isinstance(e, events.FaultStarted)}
    assert started == set(KINDS)
    assert any(r.endswith("(fault)") for r in outcome.restarts)  # crash faults carried out
    assert outcome.empty_answers == 0 and outcome.stale_answers == 0 and not outcome.violations


def test_the_matrix_row_fenced_commit_alone_prevents_the_outage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # its report goes to ./reports
    scenario = load_file(SCENARIOS / "race.toml")
    [(row, outcome)] = run_matrix(scenario, cluster_settings(tmp_path), tmp_path / "matrix",
                                  only=["fenced_commit"])
    assert row.protections == ("fenced_commit",)
    assert outcome.requests > 0 and not outcome.failures
    assert outcome.empty_answers == 0 and outcome.stale_flips == 0
    assert outcome.live_deletions == 0 and outcome.converged_after_s is not None
