"""The Prometheus alerting rules (dashboards/alerts.yml): valid, unit-tested by promtool, and
reading only metrics the processes really serve.

``dashboards/alerts_test.yml`` holds promtool's unit tests: for each invariant (I1, C1, C2, C3)
the incident's series make the rule fire with its summary, and a healthy or safe cluster's
series keep it silent. That the Prometheus of ``dnsrace up --with-prometheus`` loads the rules
is checked against a real Prometheus in test_network_dashboard.py.
"""

from __future__ import annotations

import re
import subprocess

from dashboards import catalog, generate
from tests.conftest import require_tool

RULES = generate.ROOT / "alerts.yml"
UNIT_TESTS = generate.ROOT / "alerts_test.yml"
METRIC = re.compile(r"\bdnsrace_[a-z0-9_]+")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=30)


def _rules() -> list[dict[str, str]]:
    """Each rule's alert name, expression, invariant and summary, read from the file's text
    (the project has no YAML parser; promtool checks the YAML itself)."""
    text = RULES.read_text()
    out = []
    for block in re.split(r"\n      - alert: ", text)[1:]:
        name = block.split("\n", 1)[0].strip()
        expr = block.split("expr:", 1)[1].split("\n        for:")[0].split("\n        labels:")[0]
        invariant = re.search(r"invariant: (\w+)", block)
        summary = re.search(r"summary: >-\n((?:            .*\n)+)", block)
        out.append({"alert": name, "expr": expr,
                    "invariant": invariant.group(1) if invariant else "",
                    "summary": " ".join(summary.group(1).split()) if summary else ""})
    return out


def test_promtool_accepts_the_rules() -> None:
    out = _promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 4 rules found" in out.stdout


def test_each_rule_fires_on_the_incident_and_stays_silent_otherwise() -> None:
    out = _promtool("test", "rules", str(UNIT_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    unit_tests = UNIT_TESTS.read_text()
    for rule in _rules():
        # every rule has a case where it fires and one where it must not
        assert f"alertname: {rule['alert']}\n        exp_alerts: []" in unit_tests, rule
        assert re.search(rf"alertname: {rule['alert']}\n        exp_alerts:\n", unit_tests), rule


def test_every_invariant_has_a_rule_summarised_in_the_incidents_words() -> None:
    rules = _rules()
    assert sorted(r["invariant"] for r in rules) == ["C1", "C2", "C3", "I1"]
    words = {"I1": "regional name", "C1": "leases", "C2": "network state",
             "C3": "velocity limit"}
    for rule in rules:
        assert rule["summary"].startswith(f"{rule['invariant']} broken: "), rule
        assert words[rule["invariant"]] in rule["summary"], rule


def test_rules_and_their_unit_tests_read_only_metrics_a_process_serves() -> None:
    served = {m.name for m in catalog.catalog()}
    in_rules = {name for rule in _rules() for name in METRIC.findall(rule["expr"])}
    in_tests = set(METRIC.findall(UNIT_TESTS.read_text()))
    assert in_rules and in_rules == in_tests
    assert in_rules <= served, f"not served by any process: {in_rules - served}"
