"""The DNS automation's switch: operators turn the enactors off (as AWS disabled the DNS
Enactor automation worldwide before repairing by hand) and on again.

One Redis key: present with ``off`` while the automation is off. Every enactor reads it before
each round; a round already under way finishes.
"""

from __future__ import annotations

import redis.asyncio as aioredis


class AutomationSwitch:
    def __init__(self, client: aioredis.Redis, prefix: str = "dnsrace") -> None:
        self.client = client
        self.key = f"{prefix}:automation"

    async def enabled(self) -> bool:
        return await self.client.get(self.key) != "off"

    async def set(self, on: bool) -> None:
        if on:
            await self.client.delete(self.key)
        else:
            await self.client.set(self.key, "off")
