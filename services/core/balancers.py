"""The load balancers: who they are (from the settings) and what their health says."""

from __future__ import annotations

from dataclasses import dataclass

from services.config import Settings
from services.core.names import AZS


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


def under_lb_fault(lb: LoadBalancer, capacity: int | None, active: bool) -> Health:
    """An ``lb_health`` fault's effect on one load balancer's health: while ``active``,
    unhealthy (``capacity`` None) or degraded to ``capacity``; once over, restored to health
    at the load balancer's own capacity."""
    if not active:
        return Health(True, lb.capacity)
    if capacity is None:
        return Health(False, lb.capacity)
    return Health(capacity > 0, capacity)
