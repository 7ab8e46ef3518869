"""Scenario files: the shipped ones parse, and mistakes get messages that say what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.tools.scenario import ScenarioError, load_file, parse
from tests.conftest import REPO


@pytest.mark.parametrize("path", sorted((REPO / "scenarios").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_scenarios_parse(path: Path) -> None:
    scenario = load_file(path)
    assert scenario.rate > 0
    assert set(scenario.expect) <= {"legacy", "safe"}


def test_the_race_scenario_expects_legacy_to_break_and_safe_to_hold() -> None:
    race = load_file(REPO / "scenarios" / "race.toml")
    assert [s.action for s in race.timeline] == ["race"]
    assert race.expect["legacy"].outage is True
    assert race.expect["safe"].outage is False
    assert race.expect["safe"].max_failed_requests == 0


@pytest.mark.parametrize(("text", "message"), [
    ("name = 'x'\n[load]\nrate = 'fast'", "'rate' has the wrong type"),
    ("[load]\nrate = 10\n[[timeline]]\nat_s = 1\naction = 'explode'", "action 'explode'"),
    ("[load]\nrate = 10\n[[timeline]]\nat_s = 1\naction = 'race'\ntype = 'x'",
     "unknown key(s) type"),
    ("[load]\nrate = 10\n[expect.fast]\noutage = true", "legacy or safe"),
    ("[load]\nrate = 10\n[expect.safe]\nviolations = ['I9']", "violations may name"),
    ("[load\nrate = 10", "not valid TOML"),
    ("[load]\nrate = 10\n[[timeline]]\nat_s = 5\naction = 'race'\n"
     "[[timeline]]\nat_s = 1\naction = 'repair'", "in order of at_s"),
])
def test_bad_scenarios_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse(text, "test.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("test.toml")


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_file(tmp_path / "nope.toml")
