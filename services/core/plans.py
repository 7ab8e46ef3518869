"""Plans: what the planner decides.

A plan maps every endpoint to a weighted set of load-balancer addresses and carries a
generation that only ever grows. :func:`make_plan` is pure; the store is
:mod:`services.store.plans`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass

from services.core.balancers import Health, LoadBalancer
from services.core.names import AZS
from services.core.records import WeightedAddress
from services.errors import DnsraceError

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


class PlanRejected(DnsraceError):
    """The store refused a plan whose generation is not newer than the newest one."""
