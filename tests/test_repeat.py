"""``dnsrace repeat``'s summaries, the lines README quotes (pure: results in, text out)."""

from __future__ import annotations

from services.core.population import FleetEvents, PopulationOutcome
from services.tools.repeat import outcome_figures, summary
from services.tools.scenario import Outcome


def _run(failing_90: float, recovered: float) -> dict[str, object]:
    outcome = Outcome("legacy", clients=1000, resolver="unbound",
                      failing=PopulationOutcome(1000, 1.0, 2.5, 3.0),
                      events=FleetEvents(10.0, failing_90, 20.0, recovered))
    return outcome_figures(outcome)


def test_a_fleet_run_is_plain_json_with_its_event_times() -> None:
    figures = _run(14.0, 27.0)
    assert figures["failing"] == {"clients": 1000, "peak_share": 1.0, "ramp_s": 2.5,
                                  "recovery_ramp_s": 3.0}
    assert figures["events"] == {"empty_at_s": 10.0, "failing_90_at_s": 14.0,
                                 "repair_at_s": 20.0, "recovered_at_s": 27.0}


def test_the_run_summary_counts_the_fleet_bounds_met() -> None:
    # TTL 5, negative TTL 5: 90 % failing within 7 s, back within 12 s
    result = {"kind": "run", "settings": {"ttl_s": 5, "negative_ttl_s": 5},
              "runs": [[_run(14.0, 27.0)], [_run(19.5, 35.0)]]}
    line = summary(result)
    assert line.startswith("run: 2 of 2 runs met every expectation; ")
    assert "failing 4.0-9.5 s after the first empty answer (within 7 s in 1 of 2)" in line
    assert "back to 10 % 7.0-15.0 s after the repair (within 12 s in 1 of 2)" in line


def test_a_run_without_a_fleet_says_only_its_expectations() -> None:
    result = {"kind": "run", "settings": {"ttl_s": 5, "negative_ttl_s": 5},
              "runs": [[{"ok": True, "events": None}]]}
    assert summary(result) == "run: 1 of 1 runs met every expectation"
