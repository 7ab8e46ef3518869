"""The load-balancer fleet over real sockets: boto3 against it, health from a real Redis."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import redis.asyncio as aioredis
from boto3.dynamodb.types import Binary
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY

from services.config import Settings
from services.core.balancers import Health, fleet
from services.fleet.endpoints import FleetError, LoadBalancerFleet, serve
from services.runtime.ports import free_port
from services.runtime.redis_server import EmbeddedRedis
from services.runtime.service import ServiceContext, redis_client
from services.store.health import HealthStore

TARGET = "DynamoDB_20120810."
JSON = "application/x-amz-json-1.0"


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Poll ``check`` until it holds, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def lbs(redis_client: aioredis.Redis, prefix: str) -> AsyncIterator[LoadBalancerFleet]:
    settings = Settings(lb_network="127.0.77", lb_port=free_port(), lb_count=3)
    async with LoadBalancerFleet(settings, HealthStore(redis_client, prefix)) as fleet:
        yield fleet


def dynamodb(url: str) -> Any:
    """A real boto3 client; no retries, so an error is seen as the server sent it."""
    return boto3.client(
        "dynamodb", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="dnsrace", aws_secret_access_key="dnsrace",
        config=Config(retries={"max_attempts": 1, "mode": "standard"},
                      connect_timeout=2, read_timeout=5),
    )


async def raw_call(url: str, operation: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": JSON}
    if operation is not None:
        headers["X-Amz-Target"] = TARGET + operation
    # aiohttp's default is 5 minutes: a load balancer that never answers fails in 10 s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
            session.post(url, data=body, headers=headers) as response:
        return response.status, json.loads(await response.read())


def error_of(call: Callable[[], Any]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as info:
        call()
    error = info.value.response
    return (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"],
            error["Error"]["Message"])


async def test_boto3_puts_an_item_on_one_lb_and_gets_it_back_from_another(
        lbs: LoadBalancerFleet) -> None:
    first, second, _ = lbs.lbs
    item = {
        "pk": "user#1", "count": Decimal("42"), "ratio": Decimal("0.25"), "ok": True,
        "nothing": None, "blob": Binary(b"\x00\xffdns"), "tags": {"a", "b"},
        "scores": {Decimal(1), Decimal("2.5")}, "nested": {"list": [1, "two", {"three": 3}]},
    }

    def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        put_table = boto3.resource(
            "dynamodb", endpoint_url=lbs.url(first), region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x").Table("dnsrace")
        get_table = boto3.resource(
            "dynamodb", endpoint_url=lbs.url(second), region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x").Table("dnsrace")
        put_table.put_item(Item=item)
        got = get_table.get_item(Key={"pk": "user#1"}, ConsistentRead=True)
        deleted = get_table.delete_item(Key={"pk": "user#1"}, ReturnValues="ALL_OLD")
        after = put_table.get_item(Key={"pk": "user#1"})
        return got, deleted, after

    got, deleted, after = await asyncio.to_thread(scenario)
    assert got["Item"] == item
    assert deleted["Attributes"] == item
    assert "Item" not in after


async def test_boto3_creates_lists_describes_and_deletes_tables(lbs: LoadBalancerFleet) -> None:
    client = dynamodb(lbs.url(lbs.lbs[0]))

    def scenario() -> tuple[Any, ...]:
        created = client.create_table(
            TableName="orders", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"},
                       {"AttributeName": "at", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                  {"AttributeName": "at", "AttributeType": "N"}],
        )
        client.get_waiter("table_exists").wait(TableName="orders",
                                               WaiterConfig={"Delay": 0.1, "MaxAttempts": 5})
        client.put_item(TableName="orders", Item={"id": {"S": "o1"}, "at": {"N": "1.50"}})
        got = client.get_item(TableName="orders", Key={"id": {"S": "o1"}, "at": {"N": "15E-1"}})
        listed = client.list_tables()
        paged = client.list_tables(Limit=1)
        described = client.describe_table(TableName="orders")["Table"]
        again = error_of(lambda: client.create_table(
            TableName="orders", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}]))
        client.delete_table(TableName="orders")
        gone = error_of(lambda: client.describe_table(TableName="orders"))
        return created, got, listed, paged, described, again, gone

    created, got, listed, paged, described, again, gone = await asyncio.to_thread(scenario)
    assert created["TableDescription"]["TableStatus"] == "ACTIVE"
    assert got["Item"] == {"id": {"S": "o1"}, "at": {"N": "1.5"}}
    assert listed["TableNames"] == ["dnsrace", "orders"]
    assert paged["TableNames"] == ["dnsrace"] and paged["LastEvaluatedTableName"] == "dnsrace"
    assert described["ItemCount"] == 1
    assert [k["KeyType"] for k in described["KeySchema"]] == ["HASH", "RANGE"]
    assert again[:2] == ("ResourceInUseException", 400)
    assert gone[:2] == ("ResourceNotFoundException", 400)


async def test_missing_table_and_bad_requests_get_dynamodb_errors(lbs: LoadBalancerFleet) -> None:
    client = dynamodb(lbs.url(lbs.lbs[1]))

    def scenario() -> dict[str, tuple[str, int, str]]:
        return {
            "missing table": error_of(lambda: client.get_item(
                TableName="no-such-table", Key={"pk": {"S": "a"}})),
            "missing key": error_of(lambda: client.put_item(
                TableName="dnsrace", Item={"other": {"S": "a"}})),
            "key type": error_of(lambda: client.get_item(
                TableName="dnsrace", Key={"pk": {"N": "1"}})),
            "bad number": error_of(lambda: client.put_item(
                TableName="dnsrace", Item={"pk": {"S": "a"}, "n": {"N": "twelve"}})),
            "null false": error_of(lambda: client.put_item(
                TableName="dnsrace", Item={"pk": {"S": "a"}, "n": {"NULL": False}})),
            "duplicate set": error_of(lambda: client.put_item(
                TableName="dnsrace", Item={"pk": {"S": "a"}, "s": {"SS": ["x", "x"]}})),
            "extra key": error_of(lambda: client.get_item(
                TableName="dnsrace", Key={"pk": {"S": "a"}, "sk": {"S": "b"}})),
        }

    errors = await asyncio.to_thread(scenario)
    code, status, message = errors.pop("missing table")
    assert (code, status) == ("ResourceNotFoundException", 400)
    assert "no-such-table" in message
    for case, (code, status, _) in errors.items():
        assert (code, status) == ("ValidationException", 400), case
    assert "Missing the key pk" in errors["missing key"][2]
    assert "Type mismatch for key pk" in errors["key type"][2]


async def test_protocol_errors_are_dynamodb_shaped(lbs: LoadBalancerFleet) -> None:
    url = lbs.url(lbs.lbs[0])
    status, body = await raw_call(url, "GetItem", b"{not json")
    assert status == 400
    assert body["__type"] == "com.amazon.coral.service#SerializationException"
    assert body["message"]
    status, body = await raw_call(url, "Scan", b"{}")
    assert (status, body["__type"]) == (400, "com.amazon.coral.service#UnknownOperationException")
    status, body = await raw_call(url, None, b"{}")
    assert (status, body["__type"]) == (400, "com.amazon.coral.service#UnknownOperationException")
    status, body = await raw_call(url, "GetItem", b'{"TableName": "zz"}')
    assert (status, body["__type"]) == (
        400, "com.amazonaws.dynamodb.v20120810#ValidationException")


async def test_unhealthy_load_balancer_answers_503_then_recovers(
        lbs: LoadBalancerFleet) -> None:
    sick, well, _ = lbs.lbs
    client_sick, client_well = dynamodb(lbs.url(sick)), dynamodb(lbs.url(well))

    async def status_of(url: str) -> int:
        return (await raw_call(url, "ListTables", b"{}"))[0]

    await lbs.health_store.set(sick.ip, Health(healthy=False, capacity=100))
    await eventually(lambda: _equals(status_of(lbs.url(sick)), 503))
    assert REGISTRY.get_sample_value("dnsrace_lb_healthy") == 2
    code, status, _ = await asyncio.to_thread(error_of, client_sick.list_tables)
    assert (code, status) == ("ServiceUnavailable", 503)
    listed = await asyncio.to_thread(client_well.list_tables)
    assert "dnsrace" in listed["TableNames"]

    await lbs.health_store.set(sick.ip, Health(healthy=True, capacity=100))
    await eventually(lambda: _equals(status_of(lbs.url(sick)), 200))
    assert REGISTRY.get_sample_value("dnsrace_lb_healthy") == 3
    listed = await asyncio.to_thread(client_sick.list_tables)
    assert "dnsrace" in listed["TableNames"]


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def _send_raw(ip: str, port: int, data: bytes) -> bytes:
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_garbage_never_crashes_a_listener(lbs: LoadBalancerFleet) -> None:
    lb = lbs.lbs[2]
    url = lbs.url(lb)
    port = lbs.settings.lb_port
    before = REGISTRY.get_sample_value(
        "dnsrace_lb_requests_total", {"operation": "PutItem", "outcome": "internal"}) or 0.0
    for junk in (b"\x00\xff" * 500, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                 b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nshort"):
        await asyncio.to_thread(_send_raw, lb.ip, port, junk)
    bodies = [
        b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'"just a string"', b"[" * 100_000,
        b'{"TableName": 5}', b'{"TableName": "dnsrace", "Item": []}',
        b'{"TableName": "dnsrace", "Item": {"pk": {"S": "a", "N": "1"}}}',
        b'{"TableName": "dnsrace", "Item": {"pk": {"S": "a"}, "x": {"B": "!!notbase64"}}}',
        b'{"TableName": "dnsrace", "Item": {"pk": {"S": "a"}, "x": {"N": "1e999"}}}',
        b'{"TableName": "dnsrace", "Item": {"pk": {"S": ""}}}',
        b'{"TableName": "dnsrace", "Item": {"pk": {"S": "a"}, "x": ' + b'{"L": [' * 40
        + b'{"S": "deep"}' + b"]}" * 40 + b"}}",
        b'{"TableName": "dnsrace", "Item": {"pk": {"S": "a"}, "x": {"S": "'
        + b"y" * (1024 * 1024) + b'"}}}',
        b'{"TableName": "dnsrace", "Item": {"pk": {"S": "a"}, "x": {"S": "'
        + b"y" * (500 * 1024) + b'"}}}',
    ]
    for body in bodies:
        status, answer = await raw_call(url, "PutItem", body)
        assert status == 400, (body[:60], answer)
        assert answer["__type"].split("#")[1] in ("SerializationException", "ValidationException")
    after = REGISTRY.get_sample_value(
        "dnsrace_lb_requests_total", {"operation": "PutItem", "outcome": "internal"}) or 0.0
    assert after == before

    client = dynamodb(url)
    await asyncio.to_thread(client.put_item, TableName="dnsrace", Item={"pk": {"S": "still"}})
    got = await asyncio.to_thread(client.get_item, TableName="dnsrace", Key={"pk": {"S": "still"}})
    assert got["Item"] == {"pk": {"S": "still"}}


async def test_serve_brings_up_every_listener_and_metrics(redis_server: EmbeddedRedis) -> None:
    metrics = free_port()
    settings = Settings(redis_url=redis_server.url, lb_network="127.0.78", lb_port=free_port(),
                        lb_count=4, metrics_port_base=metrics - 5)
    ctx = ServiceContext(settings, "endpoints")
    task = asyncio.create_task(serve(ctx))

    async def ready() -> bool:
        assert not task.done(), task
        return ctx.ready

    try:
        await eventually(ready, timeout_s=10)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{metrics}/healthz") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{metrics}/metrics") as response:
                text = await response.text()
            for index in range(1, 5):
                lb_url = f"http://127.0.78.{index}:{settings.lb_port}/"
                async with session.get(lb_url) as r:
                    assert r.status == 200
                    assert "healthy: dynamodb.us-east-1.amazonaws.com" in await r.text()
        assert "dnsrace_lb_healthy" in text
        assert "dnsrace_lb_requests_total" in text
        assert "dnsrace_lb_request_seconds_bucket" in text
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.78.1", settings.lb_port), timeout=1).close()


async def test_health_is_followed_across_a_redis_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = redis_client(Settings(redis_url=server.url))
    settings = Settings(lb_network="127.0.76", lb_port=free_port(), lb_count=3)
    store = HealthStore(client, "restart")
    lb = fleet(settings)[0]
    try:
        async with LoadBalancerFleet(settings, store) as lbs:
            await asyncio.to_thread(server.restart)
            await store.set(lb.ip, Health(healthy=False, capacity=100))

            async def unavailable() -> bool:
                return (await raw_call(lbs.url(lb), "ListTables", b"{}"))[0] == 503

            await eventually(unavailable, timeout_s=10)
    finally:
        await client.aclose()
        server.stop()


async def test_unreadable_health_is_counted_and_retried_until_fixed(
        redis_client: aioredis.Redis, prefix: str) -> None:
    settings = Settings(lb_network="127.0.75", lb_port=free_port(), lb_count=3)
    store = HealthStore(redis_client, prefix)
    lb = fleet(settings)[0]
    await redis_client.hset(store.key, lb.ip, "not json")
    errors = REGISTRY.get_sample_value("dnsrace_lb_health_follow_errors_total") or 0.0

    with pytest.raises(FleetError, match="could not read load-balancer health"):
        async with LoadBalancerFleet(settings, store, health_timeout_s=0.3):
            pass
    assert (REGISTRY.get_sample_value("dnsrace_lb_health_follow_errors_total") or 0) > errors
    with pytest.raises(OSError):  # nothing was left listening
        socket.create_connection((lb.ip, settings.lb_port), timeout=1).close()

    lbs = LoadBalancerFleet(settings, store, health_timeout_s=10)
    listening, done = asyncio.Event(), asyncio.Event()

    async def run_fleet() -> None:
        async with lbs:
            listening.set()
            await done.wait()

    running = asyncio.create_task(run_fleet())

    async def retried() -> bool:
        count = REGISTRY.get_sample_value("dnsrace_lb_health_follow_errors_total") or 0
        return count > errors + 2

    await eventually(retried)
    assert not listening.is_set()
    await store.set(lb.ip, Health(healthy=False, capacity=100))  # an operator fixes the value
    await asyncio.wait_for(listening.wait(), 5)
    try:
        status, body = await raw_call(lbs.url(lb), "ListTables", b"{}")
        assert (status, body["__type"].split("#")[1]) == (503, "ServiceUnavailable")
    finally:
        done.set()
        await asyncio.wait_for(running, 5)
    with pytest.raises(OSError):  # the block closed every listener
        socket.create_connection((lb.ip, settings.lb_port), timeout=1).close()
