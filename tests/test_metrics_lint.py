"""Metric names and labels by Prometheus practice, and the metric table that cannot drift.

The pure tests read the metric objects every process defines; the cluster tests read what
each process of a running cluster serves, and run ``promtool check metrics`` on it.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboards import catalog, generate
from services.core import names
from tests.conftest import require_tool
from tests.observed_race import Observed, observed_race

BASE_UNITS = ("_seconds", "_bytes")
NOT_BASE_UNITS = re.compile(r"_(ms|milliseconds|microseconds|us|minutes|hours|kb|mb|"
                            r"kilobytes|megabytes|percent)(_|$)")


def test_every_metric_is_prefixed_and_named_by_its_type() -> None:
    assert len(catalog.catalog()) >= 40
    for m in catalog.catalog():
        assert m.name.startswith("dnsrace_"), m.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", m.name), m.name
        assert m.type in ("counter", "gauge", "histogram"), f"{m.name} is a {m.type}"
        assert (m.type == "counter") == m.name.endswith("_total"), m.name
        assert not NOT_BASE_UNITS.search(m.name), f"{m.name}: use base units"
        assert len(m.help) >= 10, f"{m.name} needs a meaning"


def test_latencies_are_histograms_in_seconds() -> None:
    histograms = [m for m in catalog.catalog() if m.type == "histogram"]
    assert histograms
    assert all(m.name.endswith(BASE_UNITS) for m in histograms)
    timed = [m for m in catalog.catalog() if "_seconds" in m.name]
    # A latency is a histogram (or a counter of seconds spent); a gauge in seconds may only be
    # an age, how long the oldest waiting item has waited (dnsrace_netmgr_oldest_wait_seconds).
    assert all(m.type in ("histogram", "counter") or (m.type == "gauge" and "oldest" in m.name)
               for m in timed), [m.name for m in timed]


def test_labels_are_from_the_bounded_set() -> None:
    for m in catalog.catalog():
        unknown = set(m.labels) - set(catalog.LABELS)
        assert not unknown, f"{m.name} has labels {unknown} missing from catalog.LABELS"
        assert not {"ip", "address", "generation", "request_id", "id"} & set(m.labels)


def test_build_info_exists() -> None:
    (info,) = [m for m in catalog.catalog() if m.name == "dnsrace_build_info"]
    assert info.type == "gauge" and info.processes == catalog.EVERY_PROCESS


def test_docs_table_lists_every_metric() -> None:
    text = (generate.REPO / "docs" / "metrics.md").read_text()
    assert text == catalog.markdown(), "run: python -m dashboards.generate"
    for m in catalog.catalog():
        assert f"| `{m.name}` |" in text


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    return observed_race(tmp_path_factory)


@pytest.mark.cluster
def test_promtool_finds_no_problem_in_any_process(observed: Observed) -> None:
    require_tool("promtool")
    assert observed.promtool is not None
    assert set(observed.promtool) == set(catalog.EVERY_PROCESS)
    problems = {name: out for name, (rc, out) in observed.promtool.items() if rc or out.strip()}
    assert problems == {}


def _families(text: str) -> tuple[set[str], set[str]]:
    """(families declared, families with at least one sample) of the dnsrace_ metrics."""
    declared, sampled = set(), set()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("dnsrace_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        name = name + ("_info" if family.type == "info" else "")
        declared.add(name)
        if family.samples:
            sampled.add(name)
    return declared, sampled


@pytest.mark.cluster
def test_each_process_serves_what_the_table_says(observed: Observed) -> None:
    assert observed.problems == []
    assert set(observed.metrics_text) == set(catalog.EVERY_PROCESS)
    for process, text in observed.metrics_text.items():
        expected = {m.name for m in catalog.catalog() if process in m.processes}
        declared, sampled = _families(text)
        assert expected <= declared, f"{process} does not serve {expected - declared}"
        assert sampled <= expected, f"{process} serves {sampled - expected} not in the table"


@pytest.mark.cluster
def test_label_values_seen_are_bounded(observed: Observed) -> None:
    values: dict[str, set[str]] = {}
    for text in observed.metrics_text.values():
        for family in text_string_to_metric_families(text):
            if family.name.startswith("dnsrace_"):
                for sample in family.samples:
                    for label, value in sample.labels.items():
                        values.setdefault(label, set()).add(value)
    assert values["az"] <= set(names.AZS)
    assert values["endpoint"] <= {"regional", "fips", "dualstack", "cell"}
    for label, seen in values.items():
        assert label in catalog.LABELS or label == "le"
        for value in seen:
            assert not value.isdigit() or label == "le", f"{label}={value}: a number"
            with pytest.raises(ValueError):
                ipaddress.ip_address(value)
        assert len(seen) <= 64, f"{label} has {len(seen)} values"
