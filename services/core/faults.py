"""Faults: the model (types, stall points, a timed self-expiring fault) and who it applies to.

A fault carries its expiry, and every reader treats a fault past its expiry as over even if
nobody removed it (so a fault ends even if the control service dies). The parameters of each
fault type are a frozen dataclass; on the wire (the control API, the fault book, the history)
they are the JSON object of the fields that were given, as the API's users write them.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    PROCESS_KILL = "process_kill"
    REDIS_RESTART = "redis_restart"


CRASH_FAULTS = (FaultType.PROCESS_KILL, FaultType.REDIS_RESTART)
"""Faults the supervisor of ``dnsrace up`` carries out: SIGKILL (or stop) the target, keep it
down until the fault's expiry, start it again."""
KILLABLE = ("planner", "dns", "endpoints")
"""``process_kill`` targets besides an AZ (its enactor). ``control`` is not one: it is how
faults arrive. Redis has ``redis_restart`` (target ``redis``)."""
SUPERVISOR_KEY = "dnsrace:supervisor"
"""Set (with a short expiry, refreshed) while a supervisor carries out crash faults."""
PARTITIONER_KEY = "dnsrace:partitioner"
"""Set (with a short expiry, refreshed) while ``dnsrace up --containers`` carries out
``az_partition`` by disconnecting container networks (services/containers/partition.py)."""


class StallPoint(StrEnum):
    AFTER_CHECK = "after_check"
    BEFORE_FLIP = "before_flip"
    DURING_CLEANUP = "during_cleanup"


@dataclass(frozen=True)
class StallParams:
    """Where an ``enactor_stall`` holds its enactor, and which rounds it holds."""

    point: StallPoint
    endpoint: str | None = None
    """At ``before_flip`` only: stall before this endpoint's flip alone (None: before every)."""
    min_generation: int | None = None
    """Stall only rounds applying a plan at least this new (None: every round)."""


@dataclass(frozen=True)
class LbHealthParams:
    """What an ``lb_health`` fault does to its load balancers' health."""

    capacity: int | None = None
    """None: they are unhealthy while the fault lasts. A number: they stay healthy but report
    this capacity while it lasts (degraded; 0 is as unhealthy). At its end they are restored
    to healthy at their own capacity either way."""


@dataclass(frozen=True)
class NoParams:
    """``lock_delay``, ``enactor_pause``, ``az_partition`` and the crash faults take none."""


FaultParams = StallParams | LbHealthParams | NoParams
PARAMS_OF: dict[FaultType, type[StallParams] | type[LbHealthParams] | type[NoParams]] = {
    FaultType.ENACTOR_STALL: StallParams,
    FaultType.LOCK_DELAY: NoParams,
    FaultType.ENACTOR_PAUSE: NoParams,
    FaultType.LB_HEALTH: LbHealthParams,
    FaultType.AZ_PARTITION: NoParams,
    FaultType.PROCESS_KILL: NoParams,
    FaultType.REDIS_RESTART: NoParams,
}
"""The parameters' class of each fault type."""


def param_names(kind: FaultType) -> tuple[str, ...]:
    """The parameters a fault of this type takes, by their JSON names."""
    return tuple(f.name for f in dataclasses.fields(PARAMS_OF[kind]))


def params_json(params: FaultParams) -> dict[str, Any]:
    """The params as the control API shows them: the fields given, enums as their values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is not None:
            out[f.name] = value.value if isinstance(value, StrEnum) else value
    return out


def params_from_json(kind: FaultType, data: Mapping[str, Any]) -> FaultParams:
    """Typed params from JSON this package wrote (user input goes through
    ``services.control.requests``, which says what is wrong); ValueError if it does not fit."""
    unknown = sorted(set(data) - set(param_names(kind)))
    if unknown:
        raise ValueError(f"{kind} takes no param(s) {', '.join(unknown)}")
    if kind is FaultType.ENACTOR_STALL:
        if "point" not in data:
            raise ValueError("enactor_stall needs params.point")
        return StallParams(StallPoint(data["point"]), data.get("endpoint"),
                           data.get("min_generation"))
    if kind is FaultType.LB_HEALTH:
        return LbHealthParams(data.get("capacity"))
    return NoParams()


@dataclass(frozen=True)
class Fault:
    id: str
    type: FaultType
    target: str
    started_ms: int
    expires_ms: int
    params: FaultParams = field(default_factory=NoParams)

    def __post_init__(self) -> None:
        wanted = PARAMS_OF[self.type]
        if not isinstance(self.params, wanted):
            raise ValueError(f"a {self.type} fault takes {wanted.__name__}, "
                             f"not {type(self.params).__name__}")

    def active(self, now_ms: int) -> bool:
        return now_ms < self.expires_ms

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "type": self.type.value, "target": self.target,
                           "started_ms": self.started_ms, "expires_ms": self.expires_ms,
                           "params": params_json(self.params)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Fault:
        data = json.loads(raw)
        kind = FaultType(data["type"])
        return cls(data["id"], kind, data["target"], data["started_ms"], data["expires_ms"],
                   params_from_json(kind, data.get("params") or {}))

    @classmethod
    def new(cls, type: FaultType, target: str, duration_s: float,
            params: FaultParams | None = None, now_ms: int | None = None) -> Fault:
        start = int(time.time() * 1000) if now_ms is None else now_ms
        return cls(uuid.uuid4().hex[:12], type, target, start, start + int(duration_s * 1000),
                   NoParams() if params is None else params)


def matches(fault: Fault, az: str, point: StallPoint | None = None,
            endpoint: str | None = None, generation: int = 0) -> bool:
    """Does this fault apply to this enactor (and, for stalls, this point, endpoint and plan)?"""
    if fault.target not in (az, "all"):
        return False
    if point is None:
        return True
    stall = fault.params
    if not isinstance(stall, StallParams) or stall.point != point:
        return False
    if stall.min_generation is not None and generation < stall.min_generation:
        return False
    return stall.endpoint in (None, "", endpoint)
