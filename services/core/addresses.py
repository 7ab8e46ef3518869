"""Loopback addresses of the cascade's part 2: each instance's, and each NLB node's. Pure."""

from __future__ import annotations

from services.core.names import AZS

INSTANCE_PORT = 8080
"""Every instance listens on this port of its own address."""
NODE_PORT = 8081
"""Every NLB node listens on this port of its own address."""
MAX_INSTANCES = 250 * 256
"""Instances one AZ can address."""


def instance_address(az: str, n: int) -> str:
    """The ``n``-th instance of ``az``'s loopback address (``127.4x.h.l``, l from 1)."""
    if az not in AZS:
        raise ValueError(f"unknown AZ {az!r}; one of {', '.join(AZS)}")
    if not 0 <= n < MAX_INSTANCES:
        raise ValueError(f"instance number {n} out of range 0..{MAX_INSTANCES - 1}")
    return f"127.{40 + AZS.index(az)}.{n // 250}.{n % 250 + 1}"


def node_address(az: str) -> str:
    """The NLB's node in ``az`` (``127.(50 + AZ index).0.1``)."""
    if az not in AZS:
        raise ValueError(f"unknown AZ {az!r}; one of {', '.join(AZS)}")
    return f"127.{50 + AZS.index(az)}.0.1"
