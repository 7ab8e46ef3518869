"""Bounded load runs against the real fleet, resolving through a scripted DNS responder."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from loadgen.client import run_load
from loadgen.outcome import Outcome
from loadgen.schedule import scheduled_count
from loadgen.service import start_metrics
from services.config import Settings
from services.core.balancers import Health
from services.fleet.endpoints import LoadBalancerFleet
from services.runtime.ports import free_port, metrics_port_base
from services.runtime.service import ServiceContext
from services.store.health import HealthStore
from tests.conftest import REPO
from tests.test_loadgen_resolver import ScriptedDNS, answer, negative

NETWORK = "127.0.79"
LB = f"{NETWORK}.1"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def lbs(redis_client: aioredis.Redis, prefix: str) -> AsyncIterator[LoadBalancerFleet]:
    settings = Settings(lb_network=NETWORK, lb_port=free_port(), lb_count=3)
    async with LoadBalancerFleet(settings, HealthStore(redis_client, prefix)) as fleet:
        yield fleet


@pytest.fixture
async def dns() -> AsyncIterator[ScriptedDNS]:
    server = await ScriptedDNS(lambda q, _: answer(q, LB, ttl=5)).start()
    yield server
    await server.stop()


def settings_for(lbs: LoadBalancerFleet, dns: ScriptedDNS) -> Settings:
    return lbs.settings.replace(dns_host="127.0.0.1", dns_port=dns.port)


async def test_bounded_run_at_100_per_s_is_all_ok_at_the_target_rate(
        lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    lb_ok = metric("dnsrace_lb_requests_total", operation="GetItem", outcome="ok")
    client_ok = metric("dnsrace_client_requests_total", outcome="ok")
    started = time.monotonic()
    summary = await run_load(settings_for(lbs, dns), rate=100, duration_s=2, ramp_s=0)
    wall = time.monotonic() - started
    assert summary.outcomes[Outcome.OK] == 200 == summary.completed
    assert (summary.scheduled, summary.sent, summary.dropped) == (200, 200, 0)
    assert summary.achieved_rate_per_s == pytest.approx(100, rel=0.02)
    assert wall == pytest.approx(2.0, rel=0.05)  # it really ran for its duration
    assert summary.latency_ok.p99_ms is not None and summary.latency_ok.p99_ms < 250
    assert len(dns.queries) == 1  # the 5 s TTL covers the whole run
    assert metric("dnsrace_lb_requests_total", operation="GetItem", outcome="ok") == lb_ok + 200
    assert metric("dnsrace_client_requests_total", outcome="ok") == client_ok + 200


async def test_ramp_and_mixed_operations_write_items_the_fleet_keeps(
        lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    summary = await run_load(settings_for(lbs, dns), rate=200, duration_s=1.5, ramp_s=1,
                             operation="mixed")
    assert summary.scheduled == scheduled_count(1.5, 200, 1) == 200
    assert summary.outcomes[Outcome.OK] == 200
    assert lbs.tables.tables["dnsrace"].items  # the PutItems landed in the shared table


async def test_empty_answer_fails_every_request_and_is_cached_negatively(
        lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    dns.script = lambda q, _: negative(q, soa_ttl=60, minimum=60)
    summary = await run_load(settings_for(lbs, dns), rate=100, duration_s=1, ramp_s=0)
    assert summary.outcomes[Outcome.DNS_NODATA] == 100 == summary.completed
    assert summary.latency_ok.count == 0
    assert len(dns.queries) == 1


async def test_unhealthy_lb_is_http_error_and_dead_address_is_connect_error(
        lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    await lbs.health_store.set(LB, Health(healthy=False, capacity=100))
    deadline = time.monotonic() + 5
    while lbs.view.is_healthy(LB):
        assert time.monotonic() < deadline, "health change not seen"
        await asyncio.sleep(0.02)
    summary = await run_load(settings_for(lbs, dns), rate=50, duration_s=0.5, ramp_s=0)
    assert summary.outcomes[Outcome.HTTP_ERROR] == 25 == summary.completed

    dns.script = lambda q, _: answer(q, f"{NETWORK}.250")  # no load balancer there
    summary = await run_load(settings_for(lbs, dns), rate=50, duration_s=0.5, ramp_s=0,
                             names=["dead." + "us-east-1.amazonaws.com"])
    assert summary.outcomes[Outcome.CONNECT_ERROR] == 25 == summary.completed


@pytest.fixture
async def black_hole() -> AsyncIterator[int]:
    """A TCP listener on loopback that accepts and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, f"{NETWORK}.200", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_stalled_server_shows_timeouts_drops_and_latency_from_intended_time(
        dns: ScriptedDNS, black_hole: int) -> None:
    dns.script = lambda q, _: answer(q, f"{NETWORK}.200")
    settings = Settings(dns_host="127.0.0.1", dns_port=dns.port, lb_port=black_hole)
    summary = await run_load(settings, rate=100, duration_s=0.5, ramp_s=0, max_in_flight=5,
                             request_timeout_s=0.3)
    # 5 in flight for 0.3 s each: 5 sent at t=0, 5 more once they time out at 0.3 s
    assert summary.scheduled == 50
    assert summary.sent == 10
    assert summary.dropped == 40
    assert summary.outcomes[Outcome.TIMEOUT] == 10
    assert summary.latency.p50_ms is not None and summary.latency.p50_ms >= 300


async def test_a_stalled_scheduler_catches_up_and_reports_lateness(
        lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, time.sleep, 0.2)  # the fault: the event loop freezes for 200 ms
    summary = await run_load(settings_for(lbs, dns), rate=100, duration_s=1, ramp_s=0)
    assert summary.sent == 100 and summary.outcomes[Outcome.OK] == 100
    assert summary.late >= 15  # about 20 arrivals were due during the freeze
    assert summary.latency.max_ms is not None and summary.latency.max_ms >= 190


async def test_stop_event_ends_an_unbounded_run(lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, stop.set)
    summary = await asyncio.wait_for(
        run_load(settings_for(lbs, dns), rate=100, duration_s=0, ramp_s=0, stop=stop), 5)
    assert summary.duration_s == pytest.approx(0.5, abs=0.1)
    assert summary.completed == summary.sent == summary.outcomes[Outcome.OK]
    assert 40 <= summary.sent <= 60


async def test_metrics_port_moves_on_when_taken() -> None:
    first = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        ctx = ServiceContext(Settings(), "loadgen")
        ctx.ready = True
        runner, port = await start_metrics(ctx, first)
        try:
            assert port > first
            async with aiohttp.ClientSession() as session, \
                    session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            assert "dnsrace_client_requests_total" in text
            assert "dnsrace_client_target_requests_per_second" in text
        finally:
            await runner.cleanup()


async def test_python_m_loadgen_runs_bounded_and_writes_a_json_summary(
        lbs: LoadBalancerFleet, dns: ScriptedDNS, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env |= {"DNSRACE_DNS_PORT": str(dns.port), "DNSRACE_LB_PORT": str(lbs.settings.lb_port),
            "DNSRACE_METRICS_PORT_BASE": str(metrics_port_base())}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadgen", "--rate", "50", "--duration", "1", "--ramp", "0",
        "--summary-json", str(out), cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert "achieved" in stdout.decode()
    data = json.loads(out.read_text())
    assert data["outcomes"]["ok"] == 50
    assert data["sent"] == data["scheduled"] == 50
    assert data["achieved_rate_per_s"] == pytest.approx(50, rel=0.02)


async def test_max_requests_bounds_a_run(lbs: LoadBalancerFleet, dns: ScriptedDNS) -> None:
    summary = await asyncio.wait_for(
        run_load(settings_for(lbs, dns), rate=100, duration_s=0, ramp_s=0, max_requests=30), 5)
    assert summary.sent == summary.outcomes[Outcome.OK] == 30
    assert summary.duration_s == pytest.approx(0.3, abs=0.05)
    assert summary.achieved_rate_per_s == pytest.approx(100, rel=0.1)
