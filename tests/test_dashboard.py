"""The Grafana dashboard and provisioning: generated from one module, valid as Grafana's model.

Grafana cannot run here, so the dashboard is checked against the shape Grafana's file
provider loads: fixed uids, datasource references by uid (no ``${DS_...}`` inputs), unique
panel ids and query refIds, panels inside the 24-column grid without overlaps, and the
template variable and annotation the issue asks for. That every query returns data during a
race is checked through a real Prometheus in test_prometheus.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dashboards import dashboard, generate

MODEL: dict[str, Any] = json.loads(generate.DASHBOARD_JSON.read_text())
PANELS = [p for p in MODEL["panels"] if p["type"] != "row"]
KNOWN_PANEL_TYPES = {"row", "timeseries", "state-timeline", "stat", "table", "bargauge"}


def test_every_generated_file_is_what_its_module_makes() -> None:
    assert generate.stale() == [], "run: python -m dashboards.generate"


def test_committed_json_equals_the_generated_dashboard() -> None:
    assert dashboard.build() == MODEL


def test_dashboard_has_fixed_uids_and_no_import_inputs() -> None:
    text = generate.DASHBOARD_JSON.read_text()
    assert MODEL["uid"] == dashboard.DASHBOARD_UID
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", MODEL["uid"])
    assert MODEL["id"] is None  # provisioned: Grafana assigns its own database id
    assert "__inputs" not in MODEL and "__requires" not in MODEL
    assert "${DS_" not in text and "$datasource" not in text
    assert isinstance(MODEL["schemaVersion"], int) and MODEL["schemaVersion"] >= 36
    assert isinstance(MODEL["title"], str) and MODEL["title"]
    assert MODEL["time"] == {"from": "now-5m", "to": "now"}


def _datasources(node: Any) -> list[Any]:
    """Every ``datasource`` value anywhere in the model."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            found += _datasources(value)
    elif isinstance(node, list):
        for item in node:
            found += _datasources(item)
    return found


def test_every_datasource_reference_is_by_uid() -> None:
    refs = _datasources(MODEL)
    assert refs
    for ref in refs:
        assert isinstance(ref, dict), f"datasource by name, not by uid: {ref!r}"
        assert set(ref) == {"type", "uid"}
        assert ref in (dashboard.DATASOURCE, {"type": "grafana", "uid": "-- Grafana --"})


def test_panels_are_well_formed_and_tile_the_grid() -> None:
    ids = [p["id"] for p in MODEL["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in MODEL["panels"]:
        assert panel["type"] in KNOWN_PANEL_TYPES
        grid = panel["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"} and all(isinstance(v, int) for v in grid.values())
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24
        assert grid["h"] > 0 and grid["y"] >= 0
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in PANELS:
        assert panel["title"] and panel["description"]
        assert panel["datasource"] == dashboard.DATASOURCE
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"] == dashboard.DATASOURCE
            assert target["expr"].strip() and "legendFormat" in target
        assert set(panel["fieldConfig"]) == {"defaults", "overrides"}


@pytest.mark.parametrize("title, metric", [
    ("Client failure ratio", "dnsrace_client_requests_total"),
    ("Requests per second by outcome", "dnsrace_client_requests_total"),
    ("DNS answers by rcode, and empty answers", "dnsrace_dns_empty_answers_total"),
    ("Generation served per named endpoint vs newest plan", "dnsrace_dns_generation_served"),
    ("Enactor apply latency", "dnsrace_enactor_apply_seconds_bucket"),
    ("Lock losses", "dnsrace_enactor_locks_total"),
    ("Rejected batches by reason", "dnsrace_enactor_batches_rejected_total"),
    ("Clean-up deletions", "dnsrace_enactor_trees_deleted_total"),
    ("Active faults", "dnsrace_fault_active"),
    ("Share of the client fleet failing", "dnsrace_client_fleet_failing"),
])
def test_the_story_has_its_panels(title: str, metric: str) -> None:
    panel = next(p for p in PANELS if p["title"] == title)
    assert any(metric in t["expr"] for t in panel["targets"])


def test_failure_ratio_and_dns_panels_split_by_outcome_and_rcode() -> None:
    exprs = {(title, ref): expr for title, ref, expr in dashboard.panel_queries(MODEL)}
    assert "by (outcome)" in exprs[("Client failure ratio", "B")]
    assert "by (outcome)" in exprs[("Requests per second by outcome", "A")]
    assert "by (rcode)" in exprs[("DNS answers by rcode, and empty answers", "A")]
    assert "dnsrace_planner_newest_generation" in exprs[
        ("Generation served per named endpoint vs newest plan", "A")]
    assert "by (endpoint)" in exprs[("Generation served per named endpoint vs newest plan", "B")]
    assert "by (reason)" in exprs[("Rejected batches by reason", "A")]


def test_az_variable_filters_every_enactor_query() -> None:
    (variable,) = MODEL["templating"]["list"]
    assert variable["name"] == "az" and variable["type"] == "query"
    assert variable["datasource"] == dashboard.DATASOURCE
    assert "label_values(" in variable["definition"] and ", az)" in variable["definition"]
    assert variable["includeAll"] and variable["allValue"] == ".*"
    enactor_queries = [e for _, _, e in dashboard.panel_queries(MODEL) if "dnsrace_enactor_" in e]
    assert enactor_queries and all('az=~"$az"' in e for e in enactor_queries)


def test_faults_are_annotations_from_the_fault_gauge() -> None:
    faults = [a for a in MODEL["annotations"]["list"] if a.get("name") == "Faults"]
    assert len(faults) == 1
    (annotation,) = faults
    assert annotation["datasource"] == dashboard.DATASOURCE and annotation["enable"]
    assert "dnsrace_fault_active" in annotation["expr"] and annotation["step"] == "1s"
    assert "{{type}}" in annotation["titleFormat"] and annotation["tagKeys"] == "type,target"


def test_queries_use_grafana_variables_only_as_expand_replaces_them() -> None:
    for _, _, expr in dashboard.panel_queries(MODEL):
        expanded = dashboard.expand(expr)
        assert "$" not in expanded, expanded
    assert dashboard.expand("rate(x[$__rate_interval])") == "rate(x[4s])"


def test_provisioning_names_the_dashboards_datasource_and_folder() -> None:
    datasources = (generate.PROVISIONING / "datasources" / "dnsrace.yml").read_text()
    providers = (generate.PROVISIONING / "dashboards" / "dnsrace.yml").read_text()
    assert "apiVersion: 1" in datasources and "apiVersion: 1" in providers
    assert f"uid: {dashboard.DATASOURCE_UID}" in datasources
    assert "type: prometheus" in datasources and 'timeInterval: "1s"' in datasources
    assert "type: file" in providers and dashboard.DASHBOARDS_PATH in providers
