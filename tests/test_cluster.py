"""The whole cluster as real processes: healthy, correct under load, answering dig and boto3."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import boto3
import pytest

from services.config import Settings
from services.core import names
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import Cluster, cluster_env, health_url, healthy
from services.runtime.scrape import metrics_urls, scrape
from services.runtime.service import redis_client
from services.store.plans import PlanStore
from services.store.zone import ZoneStore
from tests.conftest import cluster_settings, require_tool, wait_until

pytestmark = pytest.mark.cluster


class Running:
    def __init__(self, cluster: Cluster, healthy_after_s: float) -> None:
        self.cluster = cluster
        self.settings: Settings = cluster.settings
        self.healthy_after_s = healthy_after_s


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("cluster")
    settings = cluster_settings(root, load_rate=200.0)
    cluster = Cluster(settings, cluster_env(settings), root / "logs")
    cluster.start()
    try:
        yield Running(cluster, cluster.wait_healthy(15.0))
    finally:
        cluster.stop()


def test_every_process_answers_healthz_within_15_seconds(running: Running) -> None:
    assert running.healthy_after_s < 15.0
    urls = [health_url(name, running.settings) for name in running.cluster.processes]
    assert all(healthy(url) for url in urls if url is not None)
    assert {"redis", "planner", "enactor_az1", "enactor_az2", "enactor_az4", "dns",
            "endpoints", "control", "loadgen"} <= set(running.cluster.processes)


async def test_sixty_seconds_of_load_without_a_failure_and_no_lagging_alias(
        running: Running) -> None:
    settings = running.settings
    url = metrics_urls(settings)["loadgen.1"]
    client = redis_client(settings)
    zone, plans = ZoneStore(client, clock=WALL_CLOCK), PlanStore(client)
    worst_lag = 0
    endpoints = names.endpoints(settings.cells)

    async def planned_and_served() -> bool:
        """Every endpoint has a plan applied, and the clients' last second was all ok."""
        snapshot = await zone.snapshot()
        if any(snapshot.alias(e) is None for e in endpoints):
            return False
        first = (await scrape(session, [url])).by("dnsrace_client_requests_total", "outcome")
        await asyncio.sleep(1.0)
        last = (await scrape(session, [url])).by("dnsrace_client_requests_total", "outcome")
        done = {k: v - first.get(k, 0) for k, v in last.items()}
        return done.get("ok", 0) > 0 and sum(done.values()) == done["ok"]

    try:
        async with aiohttp.ClientSession() as session:
            # Healthy processes come first; the first plan and the clients' caches follow.
            await wait_until(planned_and_served, 20, "the first plan to serve every client")
            before = (await scrape(session, [url])).by("dnsrace_client_requests_total",
                                                        "outcome")
            started = time.monotonic()
            while time.monotonic() - started < 60:  # the observation window itself
                newest = await plans.newest_generation()
                snapshot = await zone.snapshot()
                for endpoint in endpoints:
                    alias = snapshot.alias(endpoint)
                    assert alias is not None, f"{endpoint} has no alias"
                    assert snapshot.addresses(alias.target), f"{endpoint} names a missing tree"
                    worst_lag = max(worst_lag, newest - alias.generation)
                await asyncio.sleep(1.0)
            after = (await scrape(session, [url])).by("dnsrace_client_requests_total",
                                                       "outcome")
    finally:
        await client.aclose()
    done = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    failed = {k: v for k, v in done.items() if k != "ok" and v > 0}
    assert failed == {}
    assert done.get("ok", 0) >= 0.97 * 200 * 60
    assert worst_lag <= 3


def dig(settings: Settings, *args: str) -> str:
    binary = require_tool("dig")
    out = subprocess.run([binary, "@127.0.0.1", "-p", str(settings.dns_port), "+time=2",
                          "+tries=1", *args], capture_output=True, text=True, timeout=10)
    return out.stdout


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_gets_an_authoritative_answer_with_ttl_5(running: Running, transport: str) -> None:
    out = dig(running.settings, names.REGIONAL, "A", transport)
    assert "status: NOERROR" in out
    assert " aa" in out.split("flags:")[1].split(";")[0]
    answers = [line.split() for line in out.splitlines()
               if line.startswith(names.REGIONAL + ".") and "\tA\t" in line.replace(" ", "\t")]
    assert answers and all(row[1] == "5" for row in answers)


def test_dig_refused_outside_the_zone_and_nxdomain_inside(running: Running) -> None:
    assert "status: REFUSED" in dig(running.settings, "example.com", "A")
    missing = dig(running.settings, f"nothing-here.{names.ZONE}", "A")
    assert "status: NXDOMAIN" in missing
    assert "SOA" in missing.split("AUTHORITY SECTION")[1]


def test_boto3_puts_then_gets_an_item_through_a_load_balancer(running: Running) -> None:
    settings = running.settings
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=f"http://{settings.lb_network}.1:{settings.lb_port}",
        region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    dynamodb.put_item(TableName="dnsrace", Item={"pk": {"S": "game-day"}, "n": {"N": "7"}})
    item = dynamodb.get_item(TableName="dnsrace", Key={"pk": {"S": "game-day"}})["Item"]
    assert item == {"pk": {"S": "game-day"}, "n": {"N": "7"}}


def test_logs_carry_process_az_and_generation(running: Running) -> None:
    log = Path(running.cluster.log_dir / "enactor_az2.log").read_text()
    assert "[enactor az=use1-az2 gen=" in log


def cli(running: Running, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(cluster_env(running.settings))
    return subprocess.run([sys.executable, "-m", "services.tools.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_status_shows_every_endpoint_healthy_and_repair_leaves_it_alone(
        running: Running) -> None:
    status = cli(running, "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert len(rows) == len(names.endpoints(running.settings.cells))
    for row in rows:
        assert not row["broken"] and row["tree_exists"]
        assert row["newest"] - row["alias_generation"] <= 3
        if row["endpoint"] in names.NAMED_ENDPOINTS:
            assert row["dns_outcome"] == "ok" and row["dns_addresses"]
    table = cli(running, "status")
    assert "0 broken" in table.stdout and names.REGIONAL in table.stdout
    repair = cli(running, "repair")
    assert repair.returncode == 0
    assert "nothing to repair" in repair.stdout
