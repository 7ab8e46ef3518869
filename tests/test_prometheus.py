"""A real Prometheus scraping a real cluster through a legacy race, with the dashboard's queries.

The race is the demo's legacy phase (tests/observed_race.py, shared with the metrics and
watch tests). The times of faults and of the deleted tree come from the cluster's history,
not from Prometheus, so the dashboard is checked against what really happened.
"""

from __future__ import annotations

import itertools
import math
import subprocess
from pathlib import Path

import pytest

from dashboards import generate
from services.config import Settings
from services.core import events, names
from services.runtime import prometheus
from services.runtime.prometheus import (
    PrometheusError,
    render_config,
    scrape_config,
    targets,
    write_config,
)
from services.runtime.scrape import metrics_urls
from tests.conftest import cluster_settings, require_tool
from tests.observed_race import Observed, Series, observed_race

RATE_WINDOW_S = 4.0
"""The dashboard's $__rate_interval as tests expand it (dashboards.dashboard.expand)."""


def test_config_scrapes_every_process_of_a_cluster_on_its_own_ports(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path)
    config = scrape_config(settings)
    (job,) = config["scrape_configs"]
    assert config["global"]["scrape_interval"] == "1s" and job["job_name"] == "dnsrace"
    addresses = {c["targets"][0]: c["labels"] for c in job["static_configs"]}
    wanted = {url.split("/")[2] for url in metrics_urls(settings).values()}
    assert set(addresses) == wanted and all(a.startswith("127.0.0.1:") for a in addresses)
    assert {labels["process"] for labels in addresses.values()} == {
        "planner", "enactor_az1", "enactor_az2", "enactor_az4", "dns", "endpoints", "control",
        "loadgen", "dwfm_1", "dwfm_2", "ec2_api", "resolver"}
    assert sorted(labels["az"] for labels in addresses.values() if "az" in labels) == sorted(
        names.AZS)
    assert len(targets(settings, loadgens=3)) == len(targets(settings)) + 2


def test_committed_config_is_the_one_for_the_default_ports() -> None:
    text = (generate.ROOT / "prometheus.yml").read_text()
    assert text == render_config(Settings(), network=True, supervisor=True)
    assert "127.0.0.1:9510" in text and "127.0.0.1:8600" in text
    assert "rule_files: [alerts.yml]" in text and "127.0.0.1:9530" in text  # the supervisor


@pytest.mark.parametrize("which", ["committed", "cluster"])
def test_promtool_accepts_the_config(which: str, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    path = generate.ROOT / "prometheus.yml"
    if which == "cluster":
        path = write_config(tmp_path, cluster_settings(tmp_path), loadgens=2)
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_start_without_prometheus_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setattr(prometheus.shutil, "which", lambda _: None)
    with pytest.raises(PrometheusError, match="apt-get install prometheus"):
        prometheus.start_prometheus(Settings(), port=1, workdir=tmp_path)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    require_tool("prometheus")
    return observed_race(tmp_path_factory)



def _points(series: Series) -> list[tuple[float, float]]:
    """The finite points of a query's series, in time order.

    A ratio of rates is NaN (0/0) at a step where the window saw no request; Python's max()
    returns NaN when the first value is NaN, so such points are left out, not compared.
    """
    points = ((float(t), float(v)) for s in series for t, v in s["values"])
    return sorted((t, v) for t, v in points if math.isfinite(v))


def _first(recorded: list[events.Event], kind: type[events.Event], **match: object) -> float:
    for event in recorded:
        if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
            return event.at_ms / 1000
    raise AssertionError(f"no {kind.__name__} {match} in the history")


@pytest.mark.cluster
def test_the_race_ran_and_was_observed(observed: Observed) -> None:
    assert observed.problems == []
    assert observed.result is not None and observed.result.problems == []
    assert observed.result.reproduced


@pytest.mark.cluster
def test_prometheus_sees_every_target_up(observed: Observed) -> None:
    assert len(observed.up) == len(metrics_urls(observed.settings))
    assert set(observed.up.values()) == {1.0}
    assert observed.up_after_s is not None and observed.up_after_s < 5.0
    labels = [t["labels"] for t in observed.targets]
    assert {lb["process"] for lb in labels} == {
        "planner", "enactor_az1", "enactor_az2", "enactor_az4", "dns", "endpoints", "control",
        "loadgen", "dwfm_1", "dwfm_2", "ec2_api", "resolver"}
    assert {lb["az"] for lb in labels if "az" in lb} == set(names.AZS)


@pytest.mark.cluster
def test_every_panel_query_returns_data_during_the_race(observed: Observed) -> None:
    assert observed.panels
    empty = [key for key, series in observed.panels.items()
             if not any(math.isfinite(v) for _, v in _points(series))]
    assert empty == []


@pytest.mark.cluster
def test_failure_ratio_is_zero_before_the_outage_and_above_90_percent_during_it(
        observed: Observed) -> None:
    ratio = _points(observed.panels[("Client failure ratio", "A")])
    first_fault = _first(observed.events, events.FaultStarted)
    regional_tree = next(e for e in observed.events if isinstance(e, events.TreeDeleted)
                         and e.live and e.endpoint == names.REGIONAL)
    deleted = regional_tree.at_ms / 1000
    # Before: from one rate window after the race began (the demo had seen healthy traffic)
    # until the regional tree was deleted.
    before = [v for t, v in ratio if first_fault + RATE_WINDOW_S <= t < deleted]
    assert len(before) >= 2 and set(before) == {0.0}
    assert observed.result is not None and observed.result.outage_s is not None
    outage_end = deleted + observed.result.outage_s + observed.settings.ttl_s + RATE_WINDOW_S
    during = [v for t, v in ratio if deleted <= t <= outage_end]
    assert max(during) > 0.9
    by_outcome = {s["metric"]["outcome"]: max((v for _, v in _points([s])), default=0.0)
                  for s in observed.panels[("Client failure ratio", "B")]}
    assert by_outcome["dns_nodata"] > 0.9


@pytest.mark.cluster
def test_fleet_panel_shows_no_client_failing_before_the_outage_and_most_during_it(
        observed: Observed) -> None:
    share = _points(observed.panels[("Share of the client fleet failing", "A")])
    deleted = next(e for e in observed.events if isinstance(e, events.TreeDeleted)
                   and e.live and e.endpoint == names.REGIONAL).at_ms / 1000
    # from the race's first fault (the demo had seen healthy traffic) to the deletion: a few
    # stragglers whose last request failed at start-up (on a loaded machine) ask again, and
    # none is failing when the tree is deleted
    before = [v for t, v in share if _first(observed.events, events.FaultStarted) <= t < deleted]
    assert len(before) >= 2 and max(before) <= 0.1 and before[-1] == 0.0, before
    assert max(v for t, v in share if t >= deleted) >= 0.9


@pytest.mark.cluster
def test_fault_annotation_query_returns_the_stall_window(observed: Observed) -> None:
    slow = names.AZS[0]
    stalls = [e for e in observed.events if isinstance(e, events.FaultStarted | events.FaultEnded)
              and e.type == "enactor_stall" and e.target == slow]
    started, ended = stalls[0].at_ms / 1000, stalls[-1].at_ms / 1000
    assert isinstance(stalls[0], events.FaultStarted) and isinstance(stalls[-1],
                                                                      events.FaultEnded)
    (series,) = [s for s in observed.annotation
                 if s["metric"] == {"type": "enactor_stall", "target": slow}]
    times = [float(t) for t, _ in series["values"]]
    # One scrape interval plus one query step of slack on either side.
    assert started - 0.1 <= times[0] <= started + 2.0
    assert ended - 2.0 <= times[-1] <= ended + 1.0
    assert all(b - a <= 1.01 for a, b in itertools.pairwise(times)), "a gap"
    others = {(s["metric"]["type"], s["metric"]["target"]) for s in observed.annotation}
    assert others <= {("enactor_stall", az) for az in names.AZS}


@pytest.mark.cluster
def test_the_i1_alert_fires_once_the_regional_name_answers_empty(observed: Observed) -> None:
    regional_tree = next(e for e in observed.events if isinstance(e, events.TreeDeleted)
                         and e.live and e.endpoint == names.REGIONAL)
    deleted = regional_tree.at_ms / 1000
    fired = [float(t) for s in observed.alerts
             if s["metric"]["alertname"] == "RegionalNameAnsweredEmpty" for t, _ in s["values"]]
    assert fired, "the I1 alert never fired"
    # A client's empty answer, one scrape and one rule evaluation (1 s each) after the deletion.
    assert deleted <= min(fired) <= deleted + 5.0
    names_fired = {s["metric"]["alertname"] for s in observed.alerts}
    assert not names_fired & {"InstancesInServiceWithoutConnectivity",
                              "AzFailoverBeyondVelocityLimit"}  # no NLB runs in the race
