"""The fault API over real HTTP, with the fault book in a real Redis."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from services.config import Settings
from services.control.requests import parse_fault_request
from services.control.service import Controller, build_app
from services.core import events, names
from services.core.balancers import Health, LoadBalancer, under_lb_fault
from services.core.faults import PIDS_KEY
from services.runtime.service import ServiceContext
from services.store.health import HealthStore
from tests.conftest import wait_until


@pytest.fixture
async def api(settings_db: Settings) -> AsyncIterator[tuple[TestClient, Controller]]:
    ctx = ServiceContext(settings_db, "control")
    ctx.ready = True
    controller = Controller(ctx)
    expiry = asyncio.create_task(controller.expire_forever())
    client = TestClient(TestServer(build_app(ctx, controller)))
    await client.start_server()
    yield client, controller
    await client.close()
    await controller.stop(expiry)


STALL = {"type": "enactor_stall", "target": "use1-az1", "duration_s": 30,
         "params": {"point": "after_check"}}
LB = {"type": "lb_health", "target": "lb-001", "duration_s": 30}


async def active(client: TestClient) -> list[dict[str, Any]]:
    response = await client.get("/faults")
    assert response.status == 200
    faults: list[dict[str, Any]] = (await response.json())["faults"]
    return faults


async def test_a_fault_is_started_listed_and_removed(
        api: tuple[TestClient, Controller]) -> None:
    client, _ = api
    response = await client.post("/faults", json=STALL)
    assert response.status == 201
    fault = await response.json()
    assert {"id", "started_at", "expires_at"} <= set(fault)
    assert fault["expires_ms"] - fault["started_ms"] == 30_000
    assert fault["params"] == {"point": "after_check"}
    assert [(f["id"], f["params"]) for f in await active(client)] == [
        (fault["id"], {"point": "after_check"})]
    assert (await client.delete(f"/faults/{fault['id']}")).status == 200
    assert await active(client) == []
    assert (await client.delete(f"/faults/{fault['id']}")).status == 404


@pytest.mark.parametrize(("body", "message"), [
    ({**STALL, "type": "meteor"}, "type 'meteor' is unknown"),
    ({**STALL, "target": "use1-az9"}, "target 'use1-az9' is not valid"),
    ({**STALL, "duration_s": -1}, "duration_s must be > 0"),
    ({k: v for k, v in STALL.items() if k != "duration_s"}, "duration_s is required"),
    ({**STALL, "duration_s": "10"}, "duration_s is required"),
    ({**STALL, "params": {"point": "sometime"}}, "needs params.point"),
    ({**STALL, "params": {"point": "after_check", "endpoint": names.REGIONAL}},
     "params.endpoint only goes with point before_flip"),
    ({**STALL, "params": {"point": "before_flip", "endpoint": "nowhere"}},
     "params.endpoint 'nowhere' is not an endpoint"),
    ({**STALL, "params": {"point": "after_check", "colour": 1}},
     "takes no param(s) colour; allowed: endpoint, min_generation, point"),
    ({**STALL, "params": [1]}, "params must be a JSON object"),
    ({**LB, "params": {"capacity": -1}}, "params.capacity must be a whole number >= 0"),
    ({**LB, "type": "lock_delay", "target": "all", "params": {"capacity": 5}},
     "lock_delay takes no param(s) capacity; allowed: none"),
    ({**STALL, "colour": "red"}, "unknown field(s) colour"),
    ([1, 2], "must be a JSON object"),
])
async def test_invalid_requests_get_400_and_change_nothing(
        api: tuple[TestClient, Controller], body: Any, message: str) -> None:
    client, _ = api
    response = await client.post("/faults", json=body)
    assert response.status == 400
    assert message in (await response.json())["error"]
    assert await active(client) == []


async def test_bad_json_gets_400(api: tuple[TestClient, Controller]) -> None:
    client, _ = api
    response = await client.post("/faults", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["error"]
    assert await active(client) == []


async def test_a_fault_expires_by_itself_and_the_history_says_so(
        api: tuple[TestClient, Controller], settings_db: Settings) -> None:
    client, controller = api
    response = await client.post("/faults", json={**STALL, "duration_s": 0.3})
    fault_id = (await response.json())["id"]

    async def ended() -> list[events.FaultEnded]:
        return [e for _, e in await controller.sink.read() if isinstance(e, events.FaultEnded)]

    async def recorded() -> bool:
        return bool(await ended())

    await wait_until(recorded, 5, "the fault's expiry to be recorded")
    assert [(e.fault_id, e.why) for e in await ended()] == [(fault_id, "expired")]
    assert await active(client) == [] and await controller.book.all() == []


async def test_reset_ends_every_fault(api: tuple[TestClient, Controller]) -> None:
    client, _ = api
    for target in ("use1-az1", "use1-az2"):
        assert (await client.post("/faults", json={**STALL, "target": target})).status == 201
    response = await client.post("/faults/reset")
    assert len((await response.json())["ended"]) == 2
    assert await active(client) == []


async def test_lb_health_fault_marks_unhealthy_then_restores(
        api: tuple[TestClient, Controller], settings_db: Settings) -> None:
    client, controller = api
    health = HealthStore(controller.client)
    body = {"type": "lb_health", "target": "lb-001", "duration_s": 0.4}
    assert (await client.post("/faults", json=body)).status == 201
    ip = f"{settings_db.lb_network}.1"
    assert (await health.all())[ip].healthy is False

    async def restored() -> bool:
        return (await health.all())[ip].healthy

    await wait_until(restored, 5, "the load balancer to be healthy again")


async def test_lb_health_capacity_degrades_while_active_and_is_undone_at_expiry(
        api: tuple[TestClient, Controller], settings_db: Settings) -> None:
    # capacity=30: the load balancer stays in the plans at 30 while the fault lasts (the
    # planner weighs by it), and gets its own 100 back when the fault ends.
    client, controller = api
    health = HealthStore(controller.client)
    body = {"type": "lb_health", "target": "lb-002", "duration_s": 0.4,
            "params": {"capacity": 30}}
    assert (await client.post("/faults", json=body)).status == 201
    ip = f"{settings_db.lb_network}.2"
    assert (await health.all())[ip] == Health(True, 30)

    async def restored() -> bool:
        return (await health.all())[ip] == Health(True, 100)

    await wait_until(restored, 5, "the load balancer's own capacity back")


def test_lb_fault_health_is_pure_and_always_undone() -> None:
    lb = LoadBalancer("lb-001", "use1-az1", "10.0.0.1", 100)
    assert under_lb_fault(lb, None, active=True) == Health(False, 100)
    assert under_lb_fault(lb, 0, active=True) == Health(False, 0)
    assert under_lb_fault(lb, 40, active=True) == Health(True, 40)
    for capacity in (None, 0, 40):
        assert under_lb_fault(lb, capacity, active=False) == Health(True, 100)


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]


async def test_enactor_pause_stops_the_process_and_continues_it_at_expiry(
        api: tuple[TestClient, Controller]) -> None:
    client, controller = api
    child = subprocess.Popen(["sleep", "30"])
    try:
        await controller.client.hset(PIDS_KEY, "use1-az2", child.pid)
        body = {"type": "enactor_pause", "target": "use1-az2", "duration_s": 0.5}
        assert (await client.post("/faults", json=body)).status == 201
        assert process_state(child.pid) == "T"

        async def continued() -> bool:
            return process_state(child.pid) == "S"

        await wait_until(continued, 5, "SIGCONT at expiry")
    finally:
        child.kill()
        child.wait()


async def test_state_changes_need_the_token_when_one_is_set(
        settings_db: Settings, redis_client: aioredis.Redis) -> None:
    ctx = ServiceContext(settings_db.replace(control_token="s3cret"), "control")
    controller = Controller(ctx)
    client = TestClient(TestServer(build_app(ctx, controller)))
    await client.start_server()
    try:
        assert (await client.post("/faults", json=STALL)).status == 401
        assert (await client.get("/faults")).status == 200
        ok = await client.post("/faults", json=STALL,
                               headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 201
    finally:
        await client.close()
        await controller.client.aclose()


async def test_a_fault_still_ends_when_the_control_service_was_down_at_its_expiry(
        settings_db: Settings) -> None:
    """Restart the control service after a fault's expiry: it ends the fault and undoes it."""
    first = Controller(ServiceContext(settings_db, "control"))
    ip = f"{settings_db.lb_network}.2"
    fault = parse_fault_request({"type": "lb_health", "target": "lb-002", "duration_s": 0.3},
                                settings_db)
    await first.start(fault)
    await first.client.aclose()          # the service dies with the fault still active
    health = HealthStore(aioredis.Redis.from_url(settings_db.redis_url, decode_responses=True))
    assert (await health.all())[ip].healthy is False

    second = Controller(ServiceContext(settings_db, "control"))
    expiry = asyncio.create_task(second.expire_forever())
    try:
        async def healthy_again() -> bool:
            return (await health.all())[ip].healthy

        await wait_until(healthy_again, 5, "the restarted service to end the fault")
        ended = [e for _, e in await second.sink.read() if isinstance(e, events.FaultEnded)]
        assert [(e.fault_id, e.why) for e in ended] == [(fault.id, "expired")]
    finally:
        await second.stop(expiry)
        await health.client.aclose()


async def test_a_failed_expiry_check_is_counted_and_retried_until_redis_answers(
        api: tuple[TestClient, Controller]) -> None:
    """The fault book unreadable (a key of the wrong type: Redis refuses every read): the
    expiry loop counts each failed check and keeps trying; once readable, faults expire."""
    client, controller = api
    where = {"where": "fault_expiry"}
    before = REGISTRY.get_sample_value("dnsrace_errors_swallowed_total", where) or 0.0
    await controller.client.set(controller.book.key, "not a hash")
    controller.changed.set()

    async def retried() -> bool:
        count = REGISTRY.get_sample_value("dnsrace_errors_swallowed_total", where) or 0.0
        return count >= before + 2

    await wait_until(retried, 5, "two failed expiry checks to be counted")
    await controller.client.delete(controller.book.key)
    response = await client.post("/faults", json={**STALL, "duration_s": 0.3})
    fault_id = (await response.json())["id"]

    async def expired() -> bool:
        return any(isinstance(e, events.FaultEnded) and e.fault_id == fault_id
                   and e.why == "expired" for _, e in await controller.sink.read())

    await wait_until(expired, 5, "the fault to expire once the book is readable")
