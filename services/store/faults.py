"""Faults: the model, where active faults live, and the gate an enactor passes at each point.

A fault is timed and self-expiring: it carries its expiry, and every reader treats a fault past
its expiry as over even if nobody removed it (so a fault ends even if the control service dies).
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from services.core.faults import Fault

log = logging.getLogger(__name__)


class FaultBook:
    """Active faults in one Redis hash (id -> JSON) with a change notification."""

    def __init__(self, client: aioredis.Redis, prefix: str = "dnsrace") -> None:
        self.client = client
        self.key = f"{prefix}:faults"
        self.channel = f"{prefix}:faults:changed"

    async def add(self, fault: Fault) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, fault.id, fault.to_json())
            pipe.publish(self.channel, fault.id)
            await pipe.execute()

    async def remove(self, fault_id: str) -> Fault | None:
        raw = await self.client.hget(self.key, fault_id)
        if raw is None:
            return None
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.key, fault_id)
            pipe.publish(self.channel, fault_id)
            await pipe.execute()
        return Fault.from_json(raw)

    async def all(self) -> list[Fault]:
        faults = [Fault.from_json(v) for v in (await self.client.hgetall(self.key)).values()]
        return sorted(faults, key=lambda f: (f.started_ms, f.id))


