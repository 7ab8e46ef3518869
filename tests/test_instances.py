"""Instances as real listeners on loopback: refused until Network Manager propagated their
network state, answering once it has (a real Redis, real TCP sockets)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from services.core.addresses import instance_address
from services.ec2.instances import AzInstances
from services.ec2.netmgr import PROPAGATED_KEY
from services.runtime.ports import free_port
from services.store.launches import Launch, append_launch


def test_each_instance_has_its_own_address_in_its_az() -> None:
    assert instance_address("use1-az1", 0) == "127.40.0.1"
    assert instance_address("use1-az4", 251) == "127.42.1.2"
    with pytest.raises(ValueError, match="unknown AZ"):
        instance_address("use1-az9", 0)


async def _get(address: str, port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 2)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    return answer


async def test_an_instance_answers_only_once_its_state_propagated(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    port = free_port()
    az = AzInstances("use1-az2", redis_client, port=port)
    stopping = asyncio.Event()
    runner = asyncio.create_task(az.run(stopping))
    instance = f"{prefix}-i-1"
    try:
        await asyncio.wait_for(az.started.wait(), 10)
        await append_launch(redis_client, Launch(instance, "use1-az2", "d-1", 0))
        deadline = time.monotonic() + 10
        while instance not in az.addresses and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        address = az.addresses[instance]
        assert address.startswith("127.41.")
        with pytest.raises(ConnectionRefusedError):
            await _get(address, port)  # no connectivity yet
        await redis_client.hset(PROPAGATED_KEY, instance, "1")
        while instance not in az.servers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        answer = await _get(address, port)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(instance.encode())
    finally:
        stopping.set()
        await runner
