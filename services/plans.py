"""Plans: what the planner decides and where it keeps it.

A plan maps every endpoint to a weighted set of load-balancer addresses and carries a
generation that only ever grows. :func:`make_plan` is pure; :class:`PlanStore` is Redis.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

from services.fleet import Health, LoadBalancer
from services.names import AZS
from services.records import WeightedAddress

LBS_PER_AZ = 2


@dataclass(frozen=True)
class Plan:
    generation: int
    created_ms: int
    endpoints: Mapping[str, tuple[WeightedAddress, ...]]

    def to_json(self) -> str:
        return json.dumps({
            "generation": self.generation,
            "created_ms": self.created_ms,
            "endpoints": {e: [[a.ip, a.weight] for a in addrs]
                          for e, addrs in self.endpoints.items()},
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Plan:
        data = json.loads(raw)
        # A fleet has few (address, weight) pairs and a plan repeats them for every endpoint:
        # one (immutable) object each, not one per endpoint.
        shared: dict[tuple[str, int], WeightedAddress] = {}

        def address(ip: str, weight: int) -> WeightedAddress:
            key = (ip, int(weight))
            found = shared.get(key)
            if found is None:
                found = shared[key] = WeightedAddress(*key)
            return found

        return cls(
            generation=int(data["generation"]),
            created_ms=int(data["created_ms"]),
            endpoints={e: tuple(address(ip, w) for ip, w in rows)
                       for e, rows in data["endpoints"].items()},
        )


def _rank(endpoint: str, lb: LoadBalancer) -> bytes:
    """Rendezvous hashing: each endpoint prefers a stable subset of the fleet."""
    return hashlib.blake2b(f"{endpoint}/{lb.name}".encode(), digest_size=8).digest()


def make_plan(generation: int, created_ms: int, endpoints: tuple[str, ...],
              lbs: tuple[LoadBalancer, ...], health: Mapping[str, Health]) -> Plan:
    """Choose, for every endpoint, up to two healthy load balancers per AZ, weighted by capacity.

    Weights wobble by up to 20% per generation (seeded by the generation), as real capacity
    measurements do, so that consecutive plans differ. An endpoint whose chosen load balancers
    are all unhealthy gets an empty set: the planner writes what it sees, and only plan
    validation in safe mode refuses such a plan.
    """
    rng = random.Random(generation)
    wobble = {lb.ip: rng.uniform(0.8, 1.2) for lb in lbs}
    chosen: dict[str, tuple[WeightedAddress, ...]] = {}
    for endpoint in endpoints:
        picked: list[WeightedAddress] = []
        for az in AZS:
            in_az = sorted((lb for lb in lbs if lb.az == az), key=lambda lb: _rank(endpoint, lb))
            for lb in in_az[:LBS_PER_AZ]:
                state = health.get(lb.ip, Health(True, lb.capacity))
                if state.healthy and state.capacity > 0:
                    weight = max(1, round(state.capacity * wobble[lb.ip]))
                    picked.append(WeightedAddress(lb.ip, weight))
        chosen[endpoint] = tuple(sorted(picked))
    return Plan(generation, created_ms, chosen)


class PlanRejected(Exception):
    """The store refused a plan whose generation is not newer than the newest one."""


_PUBLISH = """
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
local generation = tonumber(ARGV[1])
if generation <= newest then
  return newest
end
redis.call('SET', KEYS[2] .. generation, ARGV[2])
redis.call('SET', KEYS[1], generation)
redis.call('ZADD', KEYS[3], generation, generation)
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', generation - tonumber(ARGV[3]))
for _, g in ipairs(old) do
  redis.call('DEL', KEYS[2] .. g)
  redis.call('ZREM', KEYS[3], g)
end
redis.call('PUBLISH', KEYS[4], generation)
return -1
"""


class PlanStore:
    """Plans in Redis: one key per generation, the newest generation, and a notification."""

    def __init__(self, client: aioredis.Redis, prefix: str = "dnsrace", keep: int = 200) -> None:
        self.client = client
        self.newest_key = f"{prefix}:plan:newest"
        self.plan_prefix = f"{prefix}:plan:g"
        self.index_key = f"{prefix}:plan:index"
        self.channel = f"{prefix}:plan:published"
        self.keep = keep
        self._publish = client.register_script(_PUBLISH)

    async def publish(self, plan: Plan) -> None:
        newest = int(await self._publish(
            keys=[self.newest_key, self.plan_prefix, self.index_key, self.channel],
            args=[plan.generation, plan.to_json(), self.keep],
        ))
        if newest >= 0:
            raise PlanRejected(
                f"plan generation {plan.generation} is not newer than stored {newest}")

    async def newest_generation(self) -> int:
        return int(await self.client.get(self.newest_key) or 0)

    async def get(self, generation: int) -> Plan | None:
        raw = await self.client.get(f"{self.plan_prefix}{generation}")
        return Plan.from_json(raw) if raw else None

    async def newest(self) -> Plan | None:
        generation = await self.newest_generation()
        return await self.get(generation) if generation else None
