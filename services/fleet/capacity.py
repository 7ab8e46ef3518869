"""A load balancer's bounded capacity: so many requests served at once, so many waiting.

Load on "DynamoDB" then shows as it does on a real service: first as latency (requests wait
for a slot), then as ``ThrottlingException`` when the waiting line is full.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Counter, Gauge

from services.fleet.values import DynamoError, ErrorKind

LB_IN_FLIGHT = Gauge("dnsrace_lb_in_flight", "Requests the load balancers are serving now")
LB_WAITING = Gauge("dnsrace_lb_waiting", "Requests waiting for a load balancer's capacity")
LB_THROTTLED = Counter("dnsrace_lb_throttled",
                       "Requests refused with ThrottlingException because the queue was full")


class Capacity:
    """One load balancer's slots (``max_in_flight``) and waiting line (``queue``)."""

    def __init__(self, name: str, max_in_flight: int, queue: int, service_s: float) -> None:
        self.name = name
        self.queue = queue
        self.service_s = service_s
        self.slots = asyncio.Semaphore(max_in_flight)
        self.waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for a request's service time; refuse at once when the line is full."""
        if self.slots.locked():
            if self.waiting >= self.queue:
                LB_THROTTLED.inc()
                raise DynamoError(ErrorKind.THROTTLING,
                                  f"Rate of requests exceeds the allowed throughput ({self.name})")
            self.waiting += 1
            LB_WAITING.inc()
            try:
                await self.slots.acquire()
            finally:
                self.waiting -= 1
                LB_WAITING.dec()
        else:
            await self.slots.acquire()
        LB_IN_FLIGHT.inc()
        try:
            if self.service_s > 0:
                await asyncio.sleep(self.service_s)
            yield
        finally:
            LB_IN_FLIGHT.dec()
            self.slots.release()
