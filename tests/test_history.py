"""The history on a real Redis: each event at the time of the clock that recorded it, in the
JSON that ``dnsrace check`` and the reports have always read."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from services.core import events
from services.store.history import RedisHistory
from tests.conftest import INCIDENT_MS, ManualClock

STORED = ('{"kind":"batch_committed","at_ms":1760942880123,"source":"enactor/use1-az1",'
          '"endpoint":"dynamodb.us-east-1.amazonaws.com","generation":7,"previous":9,'
          '"rollback":9,"serial":42,"repaired":false}')
"""An entry as the history held it before events were stamped by their sink."""


async def test_events_are_stamped_by_the_recording_clock_unless_they_came_with_a_time(
        redis_client: aioredis.Redis, prefix: str, clock: ManualClock) -> None:
    sink = RedisHistory(redis_client, prefix, source="planner", clock=clock)
    await sink.record(events.PlanPublished(generation=1))
    clock.now += 250
    await sink.record_many([events.PlanPublished(generation=2),
                            events.DnsAnswer(at_ms=INCIDENT_MS + 100, source="dns",
                                             endpoint="e", generation=2, addresses=3)])
    read = [e for _, e in await RedisHistory(redis_client, prefix).read()]
    assert [(e.kind, e.at_ms, e.source) for e in read] == [
        ("plan_published", INCIDENT_MS, "planner"),
        ("plan_published", INCIDENT_MS + 250, "planner"),
        ("dns_answer", INCIDENT_MS + 100, "dns")]


async def test_a_history_opened_to_read_refuses_an_event_without_a_time(
        redis_client: aioredis.Redis, prefix: str) -> None:
    reader = RedisHistory(redis_client, prefix)
    with pytest.raises(TypeError, match="no clock"):
        await reader.record(events.PlanPublished(generation=1))
    with pytest.raises(TypeError, match="no clock"):
        await reader.record_many([events.PlanPublished(generation=1)])
    assert await reader.read() == []


async def test_stored_events_read_back_as_they_were_written(
        redis_client: aioredis.Redis, prefix: str) -> None:
    reader = RedisHistory(redis_client, prefix)
    await redis_client.xadd(reader.key, {"e": STORED})
    [(_, event)] = await reader.read()
    assert event == events.BatchCommitted(at_ms=1760942880123, source="enactor/use1-az1",
                                          endpoint="dynamodb.us-east-1.amazonaws.com",
                                          generation=7, previous=9, rollback=9, serial=42)
    assert event.to_json() == STORED
