"""Validation of fault requests: every mistake gets a message that says how to fix it."""

from __future__ import annotations

import math
from typing import Any

from services.config import Settings
from services.core import names
from services.core.balancers import fleet
from services.core.faults import (
    KILLABLE,
    Fault,
    FaultParams,
    FaultType,
    LbHealthParams,
    NoParams,
    StallParams,
    StallPoint,
    param_names,
)
from services.errors import DnsraceError
from services.runtime import netns

MAX_DURATION_S = 3600.0
FIELDS = {"type", "target", "duration_s", "params"}


class FaultRequestError(DnsraceError, ValueError):
    pass


def _choices(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(values)


def valid_targets(kind: FaultType, settings: Settings) -> list[str]:
    if kind is FaultType.LB_HEALTH:
        return ["all", *names.AZS, *(lb.name for lb in fleet(settings))]
    if kind is FaultType.PROCESS_KILL:
        return [*names.AZS, *KILLABLE]
    if kind is FaultType.REDIS_RESTART:
        return ["redis"]
    return ["all", *names.AZS]


def parse_fault_request(body: Any, settings: Settings, partitioner: bool = False) -> Fault:
    """A new Fault from a request body, or FaultRequestError saying what is wrong."""
    if not isinstance(body, dict):
        raise FaultRequestError("body must be a JSON object {type, target, duration_s, params}")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise FaultRequestError(f"unknown field(s) {', '.join(map(str, unknown))}; "
                                f"allowed: {_choices(sorted(FIELDS))}")
    raw_type = body.get("type", "")
    try:
        kind = FaultType(str(raw_type))
    except ValueError:
        raise FaultRequestError(f"type {raw_type!r} is unknown; choose one of "
                                f"{_choices([t.value for t in FaultType])}") from None
    target = body.get("target")
    targets = valid_targets(kind, settings)
    if target not in targets:
        raise FaultRequestError(f"target {target!r} is not valid for {kind}; choose one of "
                                f"{_choices(targets)}")
    if kind is FaultType.AZ_PARTITION and not partitioner:  # else 'up --containers' cuts
        missing = [az for az in (names.AZS if target == "all" else (target,))
                   if not netns.available(str(az))]
        if missing:
            raise FaultRequestError("az_partition needs a cluster started with 'dnsrace up "
                                    "--isolate' or '--containers' (no network namespace "
                                    f"for {', '.join(missing)})")
    duration = body.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise FaultRequestError("duration_s is required: a number of seconds > 0")
    if not math.isfinite(duration) or duration <= 0 or duration > MAX_DURATION_S:
        raise FaultRequestError(f"duration_s must be > 0 and <= {MAX_DURATION_S:.0f}, "
                                f"got {duration}")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise FaultRequestError("params must be a JSON object")
    allowed = param_names(kind)
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise FaultRequestError(f"{kind} takes no param(s) {', '.join(map(str, extra))}; "
                                f"allowed: {_choices(sorted(allowed)) or 'none'}")
    return Fault.new(kind, str(target), float(duration), _params(kind, params, settings))


def _params(kind: FaultType, params: dict[str, Any], settings: Settings) -> FaultParams:
    """The typed params of a fault of this type, or FaultRequestError saying what is wrong."""
    if kind is FaultType.ENACTOR_STALL:
        return _stall(params, settings)
    if kind is FaultType.LB_HEALTH:
        capacity = params.get("capacity")
        if "capacity" in params and not _whole(capacity):
            raise FaultRequestError("params.capacity must be a whole number >= 0")
        return LbHealthParams(capacity)
    return NoParams()


def _whole(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


def _stall(params: dict[str, Any], settings: Settings) -> StallParams:
    point = params.get("point")
    if point not in [p.value for p in StallPoint]:
        raise FaultRequestError(f"enactor_stall needs params.point, one of "
                                f"{_choices([p.value for p in StallPoint])}")
    endpoint = params.get("endpoint")
    if endpoint is not None:
        if point != StallPoint.BEFORE_FLIP:
            raise FaultRequestError("params.endpoint only goes with point before_flip")
        if endpoint not in names.endpoints(settings.cells):
            raise FaultRequestError(f"params.endpoint {endpoint!r} is not an endpoint; "
                                    f"e.g. {names.REGIONAL}")
    minimum = params.get("min_generation")
    if "min_generation" in params and not _whole(minimum):
        raise FaultRequestError("params.min_generation must be a whole number >= 0 "
                                "(stall only rounds applying a plan at least this new)")
    return StallParams(StallPoint(point), endpoint, minimum)
