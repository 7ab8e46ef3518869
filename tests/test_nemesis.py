"""The nemesis's schedule: seeded, replayable, every kind listed, within its duration, and
every fault one the fault API accepts."""

from __future__ import annotations

from pathlib import Path

from services.config import Settings
from services.control.requests import parse_fault_request
from services.tools.nemesis import KINDS, NemesisSpec, timeline
from services.tools.scenario import load_file

REPO = Path(__file__).resolve().parent.parent


def test_the_same_seed_replays_the_same_faults_and_another_seed_does_not() -> None:
    spec = NemesisSpec(seed=7, duration_s=60)
    assert timeline(spec) == timeline(NemesisSpec(seed=7, duration_s=60))
    assert timeline(spec) != timeline(NemesisSpec(seed=8, duration_s=60))


def test_every_kind_fires_and_every_fault_ends_within_the_duration() -> None:
    for seed in range(20):
        steps = timeline(NemesisSpec(seed=seed, duration_s=25), start_s=1.0)
        assert {fault["type"] for _, fault in steps} == set(KINDS)
        assert all(at + fault["duration_s"] <= 26.0 for at, fault in steps)
        ats = [at for at, _ in steps]
        assert ats == sorted(ats) and len(set(ats)) == len(ats)  # one at a time
        for _, fault in steps:
            parse_fault_request(fault, Settings())  # the API takes it as it is


def test_nemesis_toml_is_two_minutes_of_every_kind_with_safe_expectations() -> None:
    scenario = load_file(REPO / "scenarios" / "nemesis.toml")
    kinds = {step.fault["type"] for step in scenario.timeline}
    assert kinds == set(KINDS)
    last = max(s.at_s + s.fault["duration_s"] for s in scenario.timeline)
    assert 110 <= last <= 121
    safe = scenario.expect["safe"]
    assert safe.outage is False and safe.max_stale_answers == 0 and safe.violations == ()
