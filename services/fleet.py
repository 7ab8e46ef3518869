"""The load-balancer fleet: who the load balancers are, and their health in Redis.

The endpoint-fleet process serves one HTTP listener per load balancer; the planner reads
health from here; the control service's ``lb_health`` fault writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.config import Settings
from services.names import AZS


@dataclass(frozen=True)
class LoadBalancer:
    name: str
    az: str
    ip: str
    capacity: int


@dataclass(frozen=True)
class Health:
    healthy: bool
    capacity: int


def fleet(settings: Settings) -> tuple[LoadBalancer, ...]:
    """``lb_count`` load balancers on ``<lb_network>.1..N``, dealt round-robin over the AZs."""
    return tuple(
        LoadBalancer(
            name=f"lb-{i + 1:03d}",
            az=AZS[i % len(AZS)],
            ip=f"{settings.lb_network}.{i + 1}",
            capacity=100,
        )
        for i in range(settings.lb_count)
    )


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
