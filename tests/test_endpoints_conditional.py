"""Conditional writes and bounded capacity of the fleet, over real sockets, through boto3."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.config import Settings
from services.fleet.endpoints import LoadBalancerFleet
from services.runtime.ports import free_port
from services.store.health import HealthStore
from tests.test_endpoints import dynamodb, error_of, raw_call

LEASE = {"TableName": "dnsrace", "Key": {"pk": {"S": "droplet#1"}}}


@pytest.fixture
async def lbs(redis_client: aioredis.Redis, prefix: str) -> AsyncIterator[LoadBalancerFleet]:
    settings = Settings(lb_network="127.0.78", lb_port=free_port(), lb_count=3)
    async with LoadBalancerFleet(settings, HealthStore(redis_client, prefix)) as fleet:
        yield fleet


async def test_boto3_takes_a_lease_once_then_renews_it_only_as_its_holder(
        lbs: LoadBalancerFleet) -> None:
    client = dynamodb(lbs.url(lbs.lbs[0]))
    take = {"Item": {"pk": {"S": "droplet#1"}, "holder": {"S": "dwfm-1"}, "expires": {"N": "10"}},
            "ConditionExpression": "attribute_not_exists(pk) OR expires < :now",
            "ExpressionAttributeValues": {":now": {"N": "5"}}, "TableName": "dnsrace"}

    def scenario() -> tuple[Any, ...]:
        client.put_item(**take)
        taken_twice = error_of(lambda: client.put_item(**take))
        renewed = client.update_item(
            **LEASE, UpdateExpression="SET #e = :until",
            ConditionExpression="holder = :me AND NOT (#e < :now)",
            ExpressionAttributeNames={"#e": "expires"},
            ExpressionAttributeValues={":me": {"S": "dwfm-1"}, ":until": {"N": "20"},
                                       ":now": {"N": "6"}},
            ReturnValues="ALL_NEW")
        stolen = error_of(lambda: client.update_item(
            **LEASE, UpdateExpression="SET holder = :me", ConditionExpression="holder = :me",
            ExpressionAttributeValues={":me": {"S": "dwfm-2"}}))
        return taken_twice, renewed, stolen, client.get_item(**LEASE)["Item"]

    taken_twice, renewed, stolen, item = await asyncio.to_thread(scenario)
    assert taken_twice[:2] == ("ConditionalCheckFailedException", 400)
    assert stolen[:2] == ("ConditionalCheckFailedException", 400)
    assert renewed["Attributes"]["expires"] == {"N": "20"}
    assert item["holder"] == {"S": "dwfm-1"}


async def test_update_item_creates_sets_and_removes(lbs: LoadBalancerFleet) -> None:
    client = dynamodb(lbs.url(lbs.lbs[1]))

    def scenario() -> tuple[Any, Any]:
        first = client.update_item(**LEASE, UpdateExpression="SET n = :zero, tmp = :zero",
                                   ExpressionAttributeValues={":zero": {"N": "0"}},
                                   ReturnValues="ALL_NEW")
        second = client.update_item(**LEASE, UpdateExpression="SET n = n + :one REMOVE tmp",
                                    ExpressionAttributeValues={":one": {"N": "1"}},
                                    ReturnValues="ALL_NEW")
        return first["Attributes"], second["Attributes"]

    first, second = await asyncio.to_thread(scenario)
    assert first == {"pk": {"S": "droplet#1"}, "n": {"N": "0"}, "tmp": {"N": "0"}}
    assert second == {"pk": {"S": "droplet#1"}, "n": {"N": "1"}}


@pytest.mark.parametrize("request_body", [
    {**LEASE, "UpdateExpression": "SET"},
    {**LEASE, "UpdateExpression": "SET pk = :v", "ExpressionAttributeValues": {":v": {"S": "x"}}},
    {**LEASE, "UpdateExpression": "SET a = :undefined"},
    {**LEASE, "UpdateExpression": "SET a = :v", "ConditionExpression": "a <",
     "ExpressionAttributeValues": {":v": {"S": "x"}}},
    {**LEASE, "UpdateExpression": "SET a = :v, a = :v",
     "ExpressionAttributeValues": {":v": {"S": "x"}}},
    {**LEASE, "UpdateExpression": "SET #x = :v", "ExpressionAttributeValues": {":v": {"S": "x"}}},
    {**LEASE, "UpdateExpression": "DROP a"},
    {**LEASE, "UpdateExpression": "SET a = :v", "ExpressionAttributeValues": {":v": {"S": "x"}},
     "ConditionExpression": "(" * 40 + "a = :v" + ")" * 40 + " AND $"},
])
async def test_bad_expressions_are_validation_errors_and_change_nothing(
        lbs: LoadBalancerFleet, request_body: dict[str, Any]) -> None:
    url = lbs.url(lbs.lbs[2])
    status, answer = await raw_call(url, "UpdateItem", json.dumps(request_body).encode())
    assert status == 400 and answer["__type"].endswith("ValidationException"), answer
    status, got = await raw_call(url, "GetItem", json.dumps(LEASE).encode())
    assert (status, got) == (200, {})


async def test_a_full_queue_is_throttled_and_the_rest_wait(
        redis_client: aioredis.Redis, prefix: str) -> None:
    settings = Settings(lb_network="127.0.79", lb_port=free_port(), lb_count=3,
                        lb_max_in_flight=1, lb_queue=1, lb_service_s=0.3)
    async with LoadBalancerFleet(settings, HealthStore(redis_client, prefix)) as fleet:
        url = fleet.url(fleet.lbs[0])
        body = json.dumps({"TableName": "dnsrace"}).encode()
        answers = await asyncio.gather(*(raw_call(url, "DescribeTable", body) for _ in range(4)))
    kinds = sorted(a["__type"].rsplit("#", 1)[-1] if s != 200 else "ok" for s, a in answers)
    assert kinds == ["ThrottlingException", "ThrottlingException", "ok", "ok"]
