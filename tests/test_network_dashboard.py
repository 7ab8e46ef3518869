"""The dashboard's "Network state and NLB" row and the alerting rules, against a real Prometheus.

The race-only cluster (tests/observed_race.py) runs none of issue 15's processes, so this
module runs them: ``dnsrace netmgr``, ``dnsrace nlb serve`` and ``dnsrace instances --az``
for the three AZs (plus ``dnsrace dns`` and ``dnsrace service-load`` when this checkout has
the service load) on an embedded Redis, in legacy mode, with the Prometheus config of
``dnsrace up`` (the supervisor's /metrics served as up.py serves it). Launches are appended to
ec2_api's launch stream as ec2_api writes them. Legacy puts the instances in service before
their network state propagated (C2) and fails every AZ away at once (C3): both alerts must
fire in Prometheus, the others stay silent, and every panel of the row returns data.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import math
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from dashboards import dashboard
from services.config import Settings
from services.core.names import AZS
from services.runtime.cluster import cluster_env
from services.runtime.ports import free_port
from services.runtime.prometheus import PrometheusServer, start_prometheus
from services.runtime.redis_server import EmbeddedRedis
from services.runtime.scrape import network_metrics_urls
from services.store.launches import LAUNCHES_STREAM, Launch
from services.tools import watch
from tests.conftest import cluster_settings, require_tool

LAUNCHES = 30
RATE_PER_S = 3.0
"""Network Manager's propagations a second: 30 launches make a 10 s backlog."""
HAS_SERVICE_LOAD = importlib.util.find_spec("loadgen.service_load") is not None
"""Branch outage2 adds ``dnsrace service-load``; until it is merged the service panel waits."""
SUPERVISOR = ("import time; from prometheus_client import start_http_server; "
              "import services.tools.supervisor; "
              "start_http_server({port}, addr='127.0.0.1'); time.sleep(300)")


@dataclass
class Run:
    settings: Settings
    started: list[str]
    prometheus: PrometheusServer
    began_unix: float = 0.0
    rules: list[str] = field(default_factory=list)
    firing: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    fired_after_s: float | None = None
    panels: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    """Process label -> the target's health, as Prometheus saw it."""
    watched: str = ""
    """``dnsrace watch --once`` when the alerts fired."""


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.tools.cli", *args]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _until(what: str, within_s: float, check: Any, detail: Any = lambda: "") -> Any:
    deadline = time.monotonic() + within_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {within_s} s: {what} {detail()}"
        time.sleep(0.2)
    return value


def _firing(server: PrometheusServer) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for alert in server.api.get("/api/v1/alerts")["alerts"]:
        if alert["state"] == "firing":
            out.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
    return out


def _value(server: PrometheusServer, expr: str) -> float | None:
    rows = server.api.query(expr)
    return float(rows[0]["value"][1]) if rows else None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    require_tool("prometheus")
    root = tmp_path_factory.mktemp("network")
    # Network Manager slower than its default 8/s: the backlog outlasts the NLB's failing checks.
    settings = cluster_settings(root, mode="legacy", netmgr_rate_per_s=RATE_PER_S)
    store = EmbeddedRedis(root / "redis", port=settings.redis_port).start()
    env = dict(os.environ, **cluster_env(settings))
    commands = {"netmgr": _command("netmgr"), "nlb": _command("nlb", "serve"),
                **{f"instances_{az.removeprefix('use1-')}": _command("instances", "--az", az)
                   for az in AZS},
                "supervisor": [sys.executable, "-c", SUPERVISOR.format(
                    port=settings.metrics_port("supervisor"))]}
    if HAS_SERVICE_LOAD:
        commands |= {"dns": _command("dns"), "service_load": _command("service-load")}
    children: list[subprocess.Popen[bytes]] = []
    server: PrometheusServer | None = None
    try:
        for name, command in commands.items():
            with open(root / f"{name}.log", "wb") as log:
                children.append(subprocess.Popen(command, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT, cwd=root))
        # Prometheus starts while the processes import (it scrapes them once they listen).
        server = start_prometheus(settings, port=free_port(), workdir=root / "prometheus",
                                  network=True, supervisor=True)
        urls = {name: url for name, url in network_metrics_urls(settings).items()
                if name in commands}
        urls["supervisor"] = f"http://127.0.0.1:{settings.metrics_port('supervisor')}/metrics"

        def serving() -> bool:
            for name, child in zip(commands, children, strict=True):
                if child.poll() is not None:  # e.g. an NLB node address already taken
                    log = (root / f"{name}.log").read_text().strip().splitlines()
                    raise AssertionError(f"{name} exited with {child.returncode}: "
                                         f"{log[-1] if log else ''}")
            return all(_answers(url) for url in urls.values())

        _until("every process serves /metrics", 45, serving)
        result = Run(settings, sorted(commands), server)
        # Prometheus scrapes every second: wait until it has seen the processes up.
        _until("Prometheus sees the processes up", 15,
               lambda: _value(server, 'sum(up{process=~"netmgr|nlb|instances_.*"})') == 5)
        result.began_unix = time.time()
        client = redis.Redis.from_url(store.url, decode_responses=True)
        for n in range(LAUNCHES):
            az = AZS[n % len(AZS)]
            launch = Launch(f"i-{n:04d}", az, "d-1", 0, slot=n // len(AZS))
            client.xadd(LAUNCHES_STREAM, launch.fields())
        client.close()
        began = time.monotonic()
        result.firing = _until("the C2 and C3 alerts fire", 40,
                               lambda: (f := _firing(server)) and len(f) >= 2 and f,
                               lambda: f"(firing: {_firing(server)}, the name's AZ records: "
                               f"{_value(server, 'max(dnsrace_nlb_name_az_records)')})")
        result.fired_after_s = time.monotonic() - began
        out = io.StringIO()
        options = watch.WatchOptions(once=True, probe=False)
        assert asyncio.run(watch.watch(settings, options, out)) == 0
        result.watched = out.getvalue()
        _until("every instance connected and the name whole again", 40,
               lambda: _value(server, "sum(dnsrace_instances_connected)") == LAUNCHES
               and _value(server, "max(dnsrace_nlb_name_az_records)") == len(AZS))
        if HAS_SERVICE_LOAD:
            _until("most service calls succeed again", 30, lambda: (_value(
                server, 'sum(rate(dnsrace_service_requests_total{outcome="ok"}[4s])) / '
                'sum(rate(dnsrace_service_requests_total[4s]))') or 0) > 0.5)
        time.sleep(2)  # two more scrapes after recovery, an observation window, not a wait
        ended = time.time()
        result.firing = {**result.firing, **_firing(server)}
        needs = dashboard.panel_needs()
        for title, ref, expr in dashboard.panel_queries(dashboard.build()):
            if title in needs:
                result.panels[(title, ref)] = server.api.query_range(
                    dashboard.expand(expr), result.began_unix - 3, ended)
        result.rules = [rule["name"] for group in server.api.get("/api/v1/rules")["groups"]
                        for rule in group["rules"]]
        result.targets = {t["labels"]["process"]: t["health"] for t in server.api.get(
            "/api/v1/targets", state="active")["activeTargets"]}
        yield result
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if server is not None:
            server.stop()
        store.stop()


def _points(series: list[dict[str, Any]]) -> list[float]:
    return [float(v) for s in series for _, v in s["values"] if math.isfinite(float(v))]


@pytest.mark.cluster
def test_prometheus_of_dnsrace_up_loads_the_alerting_rules(run: Run) -> None:
    assert sorted(run.rules) == sorted([
        "RegionalNameAnsweredEmpty", "LeasesNotRecoveringAfterDnsRepair",
        "InstancesInServiceWithoutConnectivity", "AzFailoverBeyondVelocityLimit"])


@pytest.mark.cluster
def test_it_scrapes_the_supervisor_and_issue_15s_processes(run: Run) -> None:
    assert run.targets["supervisor"] == "up"
    for process in ("netmgr", "nlb", "instances_az1", "instances_az2", "instances_az4"):
        assert run.targets[process] == "up", process
    assert run.targets["planner"] == "down"  # the race's processes are not running here


@pytest.mark.cluster
def test_legacy_breaks_c2_and_c3_and_exactly_their_alerts_fire(run: Run) -> None:
    assert set(run.firing) == {"InstancesInServiceWithoutConnectivity",
                               "AzFailoverBeyondVelocityLimit"}, run.firing
    c2 = run.firing["InstancesInServiceWithoutConnectivity"]
    assert {labels["az"] for labels in c2} == set(AZS)
    assert all(labels["invariant"] == "C2" for labels in c2)
    (c3,) = run.firing["AzFailoverBeyondVelocityLimit"]
    assert c3["invariant"] == "C3" and c3["process"] == "nlb"
    assert run.fired_after_s is not None and run.fired_after_s < 40


@pytest.mark.cluster
def test_every_panel_of_the_row_returns_data(run: Run) -> None:
    needs = dashboard.panel_needs()
    assert {title for title, _ in run.panels} == set(needs)
    left = set(run.started) | {"dns"}
    for (title, ref), series in run.panels.items():
        if not set(needs[title]) <= left:
            assert title == "Service success ratio" and not HAS_SERVICE_LOAD
            continue
        assert _points(series), f"{title} {ref}: no data"


@pytest.mark.cluster
def test_the_row_shows_the_cascade_as_it_happened(run: Run) -> None:
    backlog = _points(run.panels[("Network Manager: propagation backlog", "A")])
    assert max(backlog) > 0 and backlog[-1] == 0
    assert max(_points(run.panels[("Oldest wait for network state", "A")])) > 0
    without = _points(run.panels[("Instances without connectivity", "A")])
    assert max(without) > 0 and without[-1] == 0
    in_service_early = _points(run.panels[("Instances without connectivity", "B")])
    # Legacy: a target is in service at registration (the NLB's next round); the few Network
    # Manager (8/s) propagated before that round are not counted.
    assert LAUNCHES // 2 <= in_service_early[-1] <= LAUNCHES
    records = _points(run.panels[("NLB name's AZ records", "A")])
    # Whole, at least 2 of 3 AZ records lost to failover, whole again (on a loaded machine
    # checks may time out and flap afterwards: legacy failover then removes AZs again).
    lowest = records.index(min(records))
    assert records[lowest] <= len(AZS) - 2
    assert len(AZS) in records[:lowest] and len(AZS) in records[lowest:]
    removed = _points(run.panels[("NLB name's AZ records", "B")])
    limit = _points(run.panels[("NLB name's AZ records", "C")])
    assert set(limit) == {1.0} and max(removed) >= 2
    healthy = run.panels[("NLB targets in service by AZ", "A")]
    assert {s["metric"]["az"] for s in healthy} == set(AZS)
    if HAS_SERVICE_LOAD:
        # Calls fail while failover empties the name, and most succeed again once the
        # instances have connectivity (legacy on a loaded machine keeps flapping: no more).
        ratio = _points(run.panels[("Service success ratio", "A")])
        fell = next(i for i, v in enumerate(ratio) if v < 0.5)
        assert max(ratio[fell:]) > 0.5, ratio


@pytest.mark.cluster
def test_watch_shows_the_row_live_only_for_processes_that_answer(run: Run) -> None:
    text = run.watched
    assert "network state  " in text and "instances      without connectivity: " in text
    assert "<== C2 BROKEN" in text and "<== C3 BROKEN" in text
    removed = re.search(r"failover removed (\d) AZs in the velocity window \(limit 1\)", text)
    assert removed is not None and int(removed.group(1)) >= 2
    down = next(line for line in text.splitlines() if line.startswith("not answering"))
    assert "planner" in down and "netmgr" not in down and "nlb" not in down
