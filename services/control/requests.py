"""Validation of fault requests: every mistake gets a message that says how to fix it."""

from __future__ import annotations

import math
from typing import Any

from services.config import Settings
from services.core import names
from services.core.balancers import fleet
from services.core.faults import Fault, FaultType, StallPoint
from services.errors import DnsraceError
from services.runtime import netns

MAX_DURATION_S = 3600.0
FIELDS = {"type", "target", "duration_s", "params"}
PARAMS: dict[FaultType, set[str]] = {
    FaultType.ENACTOR_STALL: {"point", "endpoint", "min_generation"},
    FaultType.LOCK_DELAY: set(),
    FaultType.ENACTOR_PAUSE: set(),
    FaultType.LB_HEALTH: {"capacity"},
    FaultType.AZ_PARTITION: set(),
}


class FaultRequestError(DnsraceError, ValueError):
    pass


def _choices(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(values)


def valid_targets(kind: FaultType, settings: Settings) -> list[str]:
    if kind is FaultType.LB_HEALTH:
        return ["all", *names.AZS, *(lb.name for lb in fleet(settings))]
    return ["all", *names.AZS]


def parse_fault_request(body: Any, settings: Settings) -> Fault:
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
    if kind is FaultType.AZ_PARTITION:
        missing = [az for az in (names.AZS if target == "all" else (target,))
                   if not netns.available(str(az))]
        if missing:
            raise FaultRequestError("az_partition needs a cluster started with 'dnsrace up "
                                    f"--isolate' (no network namespace for {', '.join(missing)})")
    duration = body.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise FaultRequestError("duration_s is required: a number of seconds > 0")
    if not math.isfinite(duration) or duration <= 0 or duration > MAX_DURATION_S:
        raise FaultRequestError(f"duration_s must be > 0 and <= {MAX_DURATION_S:.0f}, "
                                f"got {duration}")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise FaultRequestError("params must be a JSON object")
    extra = sorted(set(params) - PARAMS[kind])
    if extra:
        allowed = _choices(sorted(PARAMS[kind])) or "none"
        raise FaultRequestError(f"{kind} takes no param(s) {', '.join(map(str, extra))}; "
                                f"allowed: {allowed}")
    if kind is FaultType.ENACTOR_STALL:
        point = params.get("point")
        if point not in [p.value for p in StallPoint]:
            raise FaultRequestError(f"enactor_stall needs params.point, one of "
                                    f"{_choices([p.value for p in StallPoint])}")
        endpoint = params.get("endpoint")
        if endpoint is not None:
            known = names.endpoints(settings.cells)
            if point != StallPoint.BEFORE_FLIP:
                raise FaultRequestError("params.endpoint only goes with point before_flip")
            if endpoint not in known:
                raise FaultRequestError(f"params.endpoint {endpoint!r} is not an endpoint; "
                                        f"e.g. {names.REGIONAL}")
    if kind is FaultType.ENACTOR_STALL and "min_generation" in params:
        minimum = params["min_generation"]
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0:
            raise FaultRequestError("params.min_generation must be a whole number >= 0 "
                                    "(stall only rounds applying a plan at least this new)")
    if kind is FaultType.LB_HEALTH and "capacity" in params:
        capacity = params["capacity"]
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise FaultRequestError("params.capacity must be a whole number >= 0")
    return Fault.new(kind, str(target), float(duration), dict(params))
