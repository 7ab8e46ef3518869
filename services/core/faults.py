"""Faults: the model (types, stall points, a timed self-expiring fault) and who it applies to.

A fault carries its expiry, and every reader treats a fault past its expiry as over even if
nobody removed it (so a fault ends even if the control service dies).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

PIDS_KEY = "dnsrace:enactor:pids"
"""Redis hash AZ -> enactor process id, for ``enactor_pause`` (SIGSTOP/SIGCONT)."""


class FaultType(StrEnum):
    ENACTOR_STALL = "enactor_stall"
    LOCK_DELAY = "lock_delay"
    ENACTOR_PAUSE = "enactor_pause"
    LB_HEALTH = "lb_health"
    AZ_PARTITION = "az_partition"


class StallPoint(StrEnum):
    AFTER_CHECK = "after_check"
    BEFORE_FLIP = "before_flip"
    DURING_CLEANUP = "during_cleanup"


@dataclass(frozen=True)
class Fault:
    id: str
    type: FaultType
    target: str
    started_ms: int
    expires_ms: int
    params: dict[str, Any] = field(default_factory=dict)

    def active(self, now_ms: int) -> bool:
        return now_ms < self.expires_ms

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Fault:
        data = json.loads(raw)
        data["type"] = FaultType(data["type"])
        return cls(**data)

    @classmethod
    def new(cls, type: FaultType, target: str, duration_s: float,
            params: dict[str, Any] | None = None, now_ms: int | None = None) -> Fault:
        start = int(time.time() * 1000) if now_ms is None else now_ms
        return cls(uuid.uuid4().hex[:12], type, target, start, start + int(duration_s * 1000),
                   dict(params or {}))


def matches(fault: Fault, az: str, point: StallPoint | None = None,
            endpoint: str | None = None, generation: int = 0) -> bool:
    """Does this fault apply to this enactor (and, for stalls, this point, endpoint and plan)?"""
    if fault.target not in (az, "all"):
        return False
    if point is None:
        return True
    if fault.params.get("point") != point:
        return False
    if generation < int(fault.params.get("min_generation", 0)):
        return False
    wanted = fault.params.get("endpoint")
    return wanted in (None, "", endpoint)
