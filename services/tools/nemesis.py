"""A scenario's ``[nemesis]``: random faults for a while, drawn from a seed (so replayable).

    [nemesis]
    seed = 7
    duration_s = 120
    faults = ["process_kill", "redis_restart", "enactor_stall", "enactor_pause",
              "lock_delay", "lb_health"]

:func:`timeline` turns it into ordinary fault steps of the fault API, one fault at a time with
a short gap after each; every kind listed fires at least once (the kinds are dealt in a
shuffled round, again and again). Crash faults are carried out by the supervisor that runs
every scenario's cluster.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from services.core import names
from services.core.faults import KILLABLE, FaultType, StallPoint

KINDS = ("process_kill", "redis_restart", "enactor_stall", "enactor_pause", "lock_delay",
         "lb_health")


@dataclass(frozen=True)
class NemesisSpec:
    seed: int
    duration_s: float
    faults: tuple[str, ...] = KINDS


def _fault(kind: str, rng: random.Random) -> dict[str, Any]:
    az = rng.choice(names.AZS)
    if kind == FaultType.PROCESS_KILL:
        return {"type": kind, "target": rng.choice([*names.AZS, *KILLABLE]),
                "duration_s": round(rng.uniform(0.2, 2.0), 2)}
    if kind == FaultType.REDIS_RESTART:
        return {"type": kind, "target": "redis", "duration_s": round(rng.uniform(0.2, 1.5), 2)}
    if kind == FaultType.ENACTOR_STALL:
        return {"type": kind, "target": az, "duration_s": round(rng.uniform(1.0, 6.0), 2),
                "params": {"point": str(rng.choice(list(StallPoint)))}}
    if kind == FaultType.LB_HEALTH:
        fault: dict[str, Any] = {"type": kind, "target": az,
                                 "duration_s": round(rng.uniform(1.0, 5.0), 2)}
        if rng.random() < 0.5:
            fault["params"] = {"capacity": rng.choice([0, 20, 50])}
        return fault
    return {"type": kind, "target": az, "duration_s": round(rng.uniform(1.0, 4.0), 2)}


def timeline(spec: NemesisSpec, start_s: float = 1.0) -> list[tuple[float, dict[str, Any]]]:
    """(at_s, fault request) for every fault, in order; each ends before ``duration_s``."""
    rng = random.Random(spec.seed)
    steps: list[tuple[float, dict[str, Any]]] = []
    at = start_s
    deck: list[str] = []
    while True:
        if not deck:
            deck = list(spec.faults)
            rng.shuffle(deck)
        fault = _fault(deck.pop(), rng)
        if at + fault["duration_s"] > start_s + spec.duration_s:
            return steps
        steps.append((round(at, 2), fault))
        at += fault["duration_s"] + rng.uniform(0.5, 2.0)
