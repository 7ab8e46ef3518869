"""Where a new instance goes: a droplet whose lease is held and that has room. Pure, no I/O.

A droplet without a lease takes no launches (DESIGN.md section 8): when every droplet of the
asked AZ is unleased or full, RunInstances answers ``InsufficientInstanceCapacity``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    droplet: str
    az: str
    instances: int
    leased: bool


def place(
    candidates: Mapping[str, Candidate], capacity: int, az: str | None, rng: random.Random
) -> Candidate | None:
    """A leased droplet with fewer than ``capacity`` instances (in ``az`` if given), chosen
    among the least filled; ``None`` when there is none."""
    fits = [
        c
        for c in candidates.values()
        if c.leased and c.instances < capacity and (az is None or c.az == az)
    ]
    if not fits:
        return None
    least = min(c.instances for c in fits)
    return rng.choice([c for c in fits if c.instances == least])
