"""Plans: what the planner decides and where it keeps it.

A plan maps every endpoint to a weighted set of load-balancer addresses and carries a
generation that only ever grows. :func:`make_plan` is pure; :class:`PlanStore` is Redis.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from services.core.plans import Plan, PlanRejected

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
