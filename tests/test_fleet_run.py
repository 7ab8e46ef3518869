"""The client fleet against real load balancers and a DNS responder over real sockets: each
virtual client chooses its own address and retries elsewhere, so one unhealthy load balancer
no longer fails every request; an empty answer reaches the clients one cache at a time."""

from __future__ import annotations

import asyncio
import time

from loadgen.client import run_load
from loadgen.outcome import Outcome
from loadgen.targets import other_endpoints
from services.core.balancers import Health
from services.fleet.endpoints import LoadBalancerFleet
from tests.test_loadgen_resolver import ScriptedDNS, answer, negative
from tests.test_loadgen_run import NETWORK, dns, lbs, metric, settings_for

__all__ = ["dns", "lbs"]  # fixtures

ADDRESSES = tuple(f"{NETWORK}.{i}" for i in (1, 2, 3))


async def _unhealthy(lbs: LoadBalancerFleet, address: str) -> None:
    await lbs.health_store.set(address, Health(healthy=False, capacity=100))
    deadline = time.monotonic() + 5
    while lbs.view.is_healthy(address):
        assert time.monotonic() < deadline, "health change not seen"
        await asyncio.sleep(0.02)


async def test_one_unhealthy_lb_fails_the_shared_cache_but_not_the_fleet(
        lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    dns.script = lambda q, _: answer(q, *ADDRESSES, ttl=5)
    await _unhealthy(lbs, ADDRESSES[0])
    settings = settings_for(lbs, dns)
    shared = await run_load(settings, rate=100, duration_s=0.5, ramp_s=0, clients=0)
    assert shared.outcomes[Outcome.HTTP_ERROR] == shared.completed == 50  # all on address 1
    fleet = await run_load(settings, rate=200, duration_s=1.5, ramp_s=0, clients=100, seed=4)
    failed = fleet.completed - fleet.outcomes[Outcome.OK]
    assert fleet.completed == 300
    assert failed / fleet.completed < 0.05, fleet.outcomes
    # about a third of the clients chose the unhealthy one and were saved by a retry
    assert 30 <= fleet.retries <= 200
    assert fleet.clients == 100 and fleet.failing is not None
    assert fleet.failing["peak_share"] is not None and fleet.failing["peak_share"] < 0.1


async def test_an_empty_answer_fails_the_fleet_client_by_client(
        lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    dns.script = lambda q, _: negative(q, soa_ttl=60, minimum=60)
    summary = await run_load(settings_for(lbs, dns), rate=200, duration_s=1.5, ramp_s=0,
                             clients=20, seed=1)
    assert summary.outcomes[Outcome.DNS_NODATA] == summary.completed == 300
    assert summary.retries == 0  # an empty answer is not retried
    # each client asked once, then read its own negative cache
    assert len(dns.queries) == 20
    assert summary.failing is not None and summary.failing["peak_share"] == 1.0
    ramp = summary.failing["ramp_s"]
    assert ramp is not None and 0 < ramp < 1.5  # not a step: the clients fail one by one


async def test_a_set_share_of_the_fleet_asks_the_fips_endpoint_and_the_cells(
        lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    dns.script = lambda q, _: answer(q, *ADDRESSES, ttl=60)
    settings = settings_for(lbs, dns).replace(cells=2, load_other_share=0.25)
    before = {e: metric("dnsrace_client_endpoint_requests_total", endpoint=e, outcome="ok")
              for e in ("regional", "fips", "cell")}
    summary = await run_load(settings, rate=200, duration_s=1.0, ramp_s=0, clients=50, seed=2)
    assert summary.outcomes[Outcome.OK] == summary.completed == 200
    # a quarter of the requests, in turn over FIPS and both cells; the rest the regional name
    asked = {e: metric("dnsrace_client_endpoint_requests_total", endpoint=e, outcome="ok")
             - before[e] for e in before}
    assert asked == {"regional": 150, "fips": 17, "cell": 33}
    others = other_endpoints(2)
    assert summary.names == ("dynamodb.us-east-1.amazonaws.com", *others)
    # every client resolved each name it asked once, through its own cache
    queried = {name for _, name in dns.queries}
    assert queried == {"dynamodb.us-east-1.amazonaws.com", *others}
