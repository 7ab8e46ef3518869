"""The cascade on the real cluster: DWFM loses its leases in the race's outage, and after repair.

The real race (services.tools.race) empties the regional name; it stays empty until the
operators' repair, so the outage lasts exactly as long as the test waits for the leases to go.
Everything is read from the DWFM hosts' /metrics and from our DNS server, as a user would.

Sizing (the defaults, which DESIGN.md section 8 sizes for the race): per host W = 2 workers,
D = 2 s, S ~ 0.15 s of droplet work + 3.5 instances * 0.01 s + two DynamoDB calls ~ 0.2 s, so
W*D/S ~ 20 items finish in time and a backlog above ~2*W*D/S = 40 collapses. The test waits
until every lease is gone (100 per host: backlog 100, 2.5 times the collapse threshold), which
queue_throttle recovers in about B*S/W = 10 s. Fewer droplets would save little wall time
(the outage is bounded by TTL + lease TTL, not by the fleet) and bring the backlog close to the
threshold, where the collapse is no longer certain. No loadgen: the DWFM hosts are the load.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from loadgen.answers import Outcome
from loadgen.resolver import StubResolver
from services.config import Settings
from services.control.client import ControlClient
from services.core import names
from services.ec2.work import in_time_capacity
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import Cluster, cluster_env
from services.runtime.scrape import Samples, metrics_urls, scrape
from services.runtime.service import redis_client
from services.store import history
from services.store.plans import PlanStore
from services.store.zone import ZoneStore
from services.tools import operator
from services.tools.race import run_race
from tests.conftest import cluster_settings, wait_until

pytestmark = pytest.mark.cluster

PROCESSES = ("redis", "planner", "enactor_az1", "enactor_az2", "enactor_az4", "dns",
             "endpoints", "control", "dwfm_1", "dwfm_2")
COLLAPSE_S = 30.0


@dataclass
class Dwfm:
    """The DWFM hosts as their /metrics show them, and the regional name as DNS answers it."""

    settings: Settings
    session: aiohttp.ClientSession
    resolver: StubResolver

    @property
    def droplets(self) -> int:
        return self.settings.dwfm_hosts * self.settings.dwfm_droplets

    async def sample(self) -> Samples:
        urls = [u for name, u in metrics_urls(self.settings).items()
                if name.startswith("dwfm_")]
        return await scrape(self.session, urls)

    async def held(self) -> int:
        return int((await self.sample()).sum("dnsrace_dwfm_leases_held"))

    async def name_answers(self) -> bool:
        answer = await self.resolver.query(names.REGIONAL)
        return answer.outcome is Outcome.OK and bool(answer.addresses)


@pytest.fixture
async def dwfm_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Dwfm]:
    settings = cluster_settings(tmp_path, **request.param)
    cluster = Cluster(settings, cluster_env(settings), tmp_path / "logs", only=PROCESSES)
    resolver = StubResolver(settings.dns_host, settings.dns_port)
    try:
        cluster.start()
        await asyncio.to_thread(cluster.wait_healthy, 20.0)
        async with aiohttp.ClientSession() as session:
            dwfm = Dwfm(settings, session, resolver)

            async def all_held() -> bool:
                return await dwfm.held() == dwfm.droplets

            await wait_until(all_held, 20.0, "every droplet lease held")
            yield dwfm
    finally:
        await resolver.aclose()
        cluster.stop()


async def ec2(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``dnsrace ec2 ...`` as an operator runs it against this cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.tools.cli", "ec2", *args],
        capture_output=True, text=True, timeout=30, env={**env, **cluster_env(settings)})


async def race_then_repair(dwfm: Dwfm) -> tuple[float, Samples]:
    """Run the real race, wait until every lease is lost, repair DNS; the repair's time and
    the hosts' metrics just before it."""
    s = dwfm.settings
    client = redis_client(s)
    try:
        report = await run_race(ControlClient.for_settings(s), history.RedisHistory(client),
                                s.cleanup_age, s.plan_interval_s, observe_s=0.5)
        assert report.emptied, report.to_text()
        assert not await dwfm.name_answers()

        async def leases_gone() -> bool:
            return await dwfm.held() == 0

        # Renewals fail once the resolvers' cached answers expire; leases then run out.
        await wait_until(leases_gone, s.ttl_s + s.lease_ttl_s + 10, "every lease lost")
        assert not await dwfm.name_answers()  # the automation did not repair it: nothing can
        before = await dwfm.sample()
        actions = await operator.repair(ZoneStore(client, clock=WALL_CLOCK), PlanStore(client),
                                        names.endpoints(s.cells))
        assert any(a.tree_was_missing for a in actions)
        return time.monotonic(), before
    finally:
        await client.aclose()


@pytest.mark.parametrize("dwfm_cluster", [{"mode": "legacy"}], indirect=True)
async def test_legacy_dwfm_collapses_after_dns_is_repaired(dwfm_cluster: Dwfm) -> None:
    dwfm = dwfm_cluster
    s = dwfm.settings
    status = await ec2(s, "status")
    assert status.returncode == 0, status.stderr
    assert f"leases held {dwfm.droplets} of {dwfm.droplets}" in status.stdout
    assert "off (every item admitted)" in status.stdout
    await race_then_repair(dwfm)
    await wait_until(dwfm.name_answers, 3.0, "the regional name answering again")

    # DynamoDB is reachable again through the name: the workers' lease writes go through
    # (in time or, in a collapse, too late).
    def written(samples: Samples) -> float:
        return sum(samples.sum("dnsrace_dwfm_work_total", outcome=o) for o in ("leased", "void"))

    before = written(await dwfm.sample())

    async def dynamodb_reachable() -> bool:
        return written(await dwfm.sample()) > before

    await wait_until(dynamodb_reachable, s.negative_ttl_s + s.ttl_s + 5,
                     "a lease write succeeding after the repair")
    start = await dwfm.sample()

    # What the workers can establish when nothing is in their way: W / S per host.
    service_s = s.dwfm_work_s + 3.5 * s.dwfm_instance_work_s
    healthy_rate = s.dwfm_hosts * s.dwfm_workers / service_s
    goodput, held = [], []
    loop = asyncio.get_running_loop()
    until = loop.time() + COLLAPSE_S
    while loop.time() < until:  # an observation window: the collapse must last all of it
        now = await dwfm.sample()
        goodput.append(now.sum("dnsrace_dwfm_goodput"))
        held.append(now.sum("dnsrace_dwfm_leases_held"))
        assert await dwfm.name_answers(), "the regional name stopped answering"
        await asyncio.sleep(0.5)
    end = await dwfm.sample()
    print(f"legacy: goodput max {max(goodput):.2f}/s (healthy {healthy_rate:.1f}/s), "
          f"held {held[0]:.0f}..{held[-1]:.0f} of {dwfm.droplets}")
    assert len(goodput) >= COLLAPSE_S / 1.0
    assert max(goodput) < 0.1 * healthy_rate
    assert max(held) <= dwfm.droplets // 2
    # Not starved of DynamoDB: no call fails any more, and the workers are busy, but what
    # they write comes after the deadline and is void.
    assert end.sum("dnsrace_dwfm_work_total", outcome="failed") == start.sum(
        "dnsrace_dwfm_work_total", outcome="failed")
    assert end.sum("dnsrace_dwfm_renewals_total", outcome="failed") == start.sum(
        "dnsrace_dwfm_renewals_total", outcome="failed")
    void = end.sum("dnsrace_dwfm_work_total", outcome="void") - start.sum(
        "dnsrace_dwfm_work_total", outcome="void")
    assert void >= COLLAPSE_S * s.dwfm_hosts  # the workers worked: every lease came too late
    assert end.sum("dnsrace_dwfm_work_started_late_total") > start.sum(
        "dnsrace_dwfm_work_started_late_total")  # on items already past their deadline
    assert end.sum("dnsrace_dwfm_queue_depth") > 2 * s.dwfm_hosts * s.dwfm_workers * (
        s.dwfm_deadline_s / service_s)

    # The operators' procedure (4:14 AM PDT): throttle incoming work, restart the DWFM hosts.
    rate = 0.5 * s.dwfm_workers / service_s  # well below what one host's workers can finish
    for args in (("throttle", f"{rate:.1f}"), ("restart", "1"), ("restart", "dwfm_2")):
        done = await ec2(s, *args)
        assert done.returncode == 0, done.stderr
    acted = time.monotonic()

    async def recovered() -> bool:
        return await dwfm.held() >= 0.95 * dwfm.droplets

    # Re-admitted at the throttle's rate: about droplets / (hosts * rate) seconds.
    await wait_until(recovered, 1.5 * dwfm.droplets / (s.dwfm_hosts * rate) + 10,
                     ">= 95 % of the leases held after throttle and restart")
    status = await ec2(s, "status")
    print(f"legacy, throttled at {rate:.1f}/s per host and restarted: >= 95 % held "
          f"{time.monotonic() - acted:.1f} s later\n{status.stdout}")
    assert f"operators: {float(f'{rate:.1f}'):g}/s" in status.stdout


@pytest.mark.parametrize("dwfm_cluster", [{"mode": "safe", "protections": ("queue_throttle",)}],
                         indirect=True)
async def test_queue_throttle_recovers_every_lease_after_dns_is_repaired(
        dwfm_cluster: Dwfm) -> None:
    dwfm = dwfm_cluster
    s = dwfm.settings
    status = await ec2(s, "status", "--json")
    assert status.returncode == 0, status.stderr
    hosts = json.loads(status.stdout)
    assert [h["host"] for h in hosts] == ["dwfm_1", "dwfm_2"]
    assert all(h["held"] == h["droplets"] == s.dwfm_droplets for h in hosts)
    assert all(sum(h["leases_held"].values()) == h["held"] and len(h["leases_held"]) == 3
               for h in hosts)
    assert all(h["admission_limit"] and h["queue_depth"] == 0 for h in hosts)
    repaired_at, before = await race_then_repair(dwfm)
    # Admission by queue size: no host lets more wait than its workers can finish in time.
    in_time = in_time_capacity(s.dwfm_workers, s.dwfm_deadline_s,
                               s.dwfm_work_s + 3.5 * s.dwfm_instance_work_s)
    assert before.sum("dnsrace_dwfm_queue_depth") <= s.dwfm_hosts * in_time

    async def recovered() -> bool:
        return await dwfm.held() >= 0.95 * dwfm.droplets

    await wait_until(recovered, 20.0, ">= 95 % of the leases held again")
    took = time.monotonic() - repaired_at
    end = await dwfm.sample()
    print(f"queue_throttle: {end.sum('dnsrace_dwfm_leases_held'):.0f} of {dwfm.droplets} "
          f"held {took:.1f} s after the repair; dropped unworked "
          f"{end.sum('dnsrace_dwfm_work_total', outcome='dropped'):.0f}, void "
          f"{end.sum('dnsrace_dwfm_work_expired_total'):.0f}")
    # No work spent on an item whose deadline had passed. An item started in time can still
    # overrun its deadline (a slow first call after the outage): rare, and counted as void.
    assert end.sum("dnsrace_dwfm_work_started_late_total") == 0
    assert end.sum("dnsrace_dwfm_work_expired_total") <= 0.05 * dwfm.droplets
