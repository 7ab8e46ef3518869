"""The load-balancer fleet: who the load balancers are, and their health in Redis.

The endpoint-fleet process serves one HTTP listener per load balancer; the planner reads
health from here; the control service's ``lb_health`` fault writes it.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from services.core.balancers import Health, LoadBalancer


class HealthStore:
    """Load-balancer health in one Redis hash (ip -> JSON), with a change notification."""

    def __init__(self, client: aioredis.Redis, prefix: str = "dnsrace") -> None:
        self.client = client
        self.key = f"{prefix}:lb:health"
        self.channel = f"{prefix}:lb:changes"

    async def set(self, ip: str, health: Health) -> None:
        value = json.dumps({"healthy": health.healthy, "capacity": health.capacity})
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, ip, value)
            pipe.publish(self.channel, ip)
            await pipe.execute()

    async def register(self, lbs: tuple[LoadBalancer, ...]) -> None:
        """Record every load balancer as healthy unless its health is already known."""
        for lb in lbs:
            value = json.dumps({"healthy": True, "capacity": lb.capacity})
            await self.client.hsetnx(self.key, lb.ip, value)

    async def all(self) -> dict[str, Health]:
        raw = await self.client.hgetall(self.key)
        out = {}
        for ip, value in raw.items():
            data = json.loads(value)
            out[ip] = Health(bool(data["healthy"]), int(data["capacity"]))
        return out
