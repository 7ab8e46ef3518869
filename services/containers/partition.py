"""``az_partition`` under ``--containers``: Redis and DNS leave the AZ's network, then return.

The control service runs in a container and cannot drive the engine; the host side of
``dnsrace up --containers`` does it instead. It keeps :data:`PARTITIONER_KEY` set while it runs
(the control API accepts ``az_partition`` then), follows the fault book, and for each AZ under
an active partition disconnects the containers every AZ shares (Redis, DNS) from that AZ's
network; when no partition covers the AZ any more, it connects them again at the same
addresses. The AZ's enactor, whose only network that is, then reaches neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from services.containers.cluster import ContainerCluster
from services.containers.engine import EngineError
from services.core.faults import PARTITIONER_KEY, Fault, FaultType
from services.core.names import AZS
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import redis_client
from services.store.faults import FaultBook

log = logging.getLogger(__name__)
POLL_S = 0.2


def partitioned(faults: list[Fault], now_ms: int) -> frozenset[str]:
    """The AZs an active ``az_partition`` covers now."""
    cut: set[str] = set()
    for fault in faults:
        if fault.type is FaultType.AZ_PARTITION and fault.active(now_ms):
            cut.update(AZS if fault.target == "all" else (fault.target,))
    return frozenset(cut)


def apply(cluster: ContainerCluster, az: str, cut: bool) -> None:
    network = cluster.layout.az_network(az).name
    for container in cluster.layout.shared():
        if cut:
            cluster.engine.disconnect(network, container)
        else:
            cluster.engine.connect(network, container)


async def follow_partitions(cluster: ContainerCluster, stop: asyncio.Event,
                            say: Callable[[str], None] = log.info) -> None:
    client = redis_client(cluster.settings, retries=1)
    book = FaultBook(client)
    cut: frozenset[str] = frozenset()
    try:
        while not stop.is_set():
            with contextlib.suppress(RedisError, OSError):
                await client.set(PARTITIONER_KEY, "containers", px=3000)
                wanted = partitioned(await book.all(), WALL_CLOCK.now_ms())
                for az in sorted(wanted ^ cut):
                    try:
                        await asyncio.to_thread(apply, cluster, az, az in wanted)
                    except EngineError as e:
                        say(f"az_partition {az}: {e}")
                        continue
                    cut = cut ^ {az}
                    say(f"az_partition: {az} {'cut off from' if az in cut else 'back with'} "
                        "Redis and DNS (network disconnect/connect)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)
    finally:
        for az in sorted(cut):  # heal on the way out: the sweep removes the rest anyway
            with contextlib.suppress(EngineError):
                await asyncio.to_thread(apply, cluster, az, False)
        with contextlib.suppress(RedisError, OSError):
            await client.delete(PARTITIONER_KEY)
        await client.aclose()
