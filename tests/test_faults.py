"""Which faults stall which enactor where: pure matching rules, typed params and their JSON,
and request validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.config import load
from services.control.requests import FaultRequestError, parse_fault_request
from services.core import names
from services.core.faults import (
    Fault,
    FaultType,
    LbHealthParams,
    NoParams,
    StallParams,
    StallPoint,
    matches,
    params_json,
)


def stall(point: StallPoint, **params: Any) -> Fault:
    return Fault.new(FaultType.ENACTOR_STALL, "use1-az2", 30, StallParams(point, **params))


def test_a_stall_matches_its_az_and_point_only() -> None:
    fault = stall(StallPoint.DURING_CLEANUP)
    assert matches(fault, "use1-az2", StallPoint.DURING_CLEANUP)
    assert not matches(fault, "use1-az1", StallPoint.DURING_CLEANUP)
    assert not matches(fault, "use1-az2", StallPoint.AFTER_CHECK)


def test_min_generation_lets_older_rounds_through() -> None:
    fault = stall(StallPoint.DURING_CLEANUP, min_generation=20)
    assert not matches(fault, "use1-az2", StallPoint.DURING_CLEANUP, generation=14)
    assert matches(fault, "use1-az2", StallPoint.DURING_CLEANUP, generation=20)


def test_before_flip_can_name_one_endpoint() -> None:
    fault = stall(StallPoint.BEFORE_FLIP, endpoint=names.REGIONAL)
    assert matches(fault, "use1-az2", StallPoint.BEFORE_FLIP, names.REGIONAL)
    assert not matches(fault, "use1-az2", StallPoint.BEFORE_FLIP, names.FIPS)


def test_a_fault_without_a_point_never_stalls() -> None:
    fault = Fault.new(FaultType.LOCK_DELAY, "all", 30)
    assert matches(fault, "use1-az1")
    assert not matches(fault, "use1-az1", StallPoint.AFTER_CHECK)


@pytest.mark.parametrize("value", [-1, "7", 2.5, True])
def test_min_generation_must_be_a_whole_number(value: object) -> None:
    body = {"type": "enactor_stall", "target": "use1-az2", "duration_s": 5,
            "params": {"point": "during_cleanup", "min_generation": value}}
    with pytest.raises(FaultRequestError, match="min_generation"):
        parse_fault_request(body, load({}))


@pytest.mark.parametrize(("kind", "params"), [
    (FaultType.ENACTOR_STALL, {"point": "after_check"}),
    (FaultType.ENACTOR_STALL, {"point": "before_flip", "endpoint": names.REGIONAL,
                               "min_generation": 0}),
    (FaultType.ENACTOR_STALL, {"point": "during_cleanup", "min_generation": 12}),
    (FaultType.LB_HEALTH, {}),
    (FaultType.LB_HEALTH, {"capacity": 40}),
    (FaultType.LOCK_DELAY, {}),
    (FaultType.ENACTOR_PAUSE, {}),
])
def test_typed_params_are_the_json_that_was_asked_for_and_round_trip(
        kind: FaultType, params: dict[str, Any]) -> None:
    target = "lb-001" if kind is FaultType.LB_HEALTH else "use1-az1"
    body = {"type": str(kind), "target": target, "duration_s": 5, "params": params}
    fault = parse_fault_request(body, load({}))
    assert params_json(fault.params) == params  # what the API, the CLI and the history show
    stored = json.loads(fault.to_json())
    assert list(stored) == ["id", "type", "target", "started_ms", "expires_ms", "params"]
    assert stored["params"] == params and stored["type"] == str(kind)
    assert Fault.from_json(fault.to_json()) == fault


def test_params_are_typed_fields() -> None:
    body = {"type": "enactor_stall", "target": "use1-az1", "duration_s": 5,
            "params": {"point": "before_flip", "endpoint": names.FIPS, "min_generation": 3}}
    fault = parse_fault_request(body, load({}))
    assert fault.params == StallParams(StallPoint.BEFORE_FLIP, names.FIPS, 3)
    health = parse_fault_request({"type": "lb_health", "target": "all", "duration_s": 5},
                                 load({}))
    assert health.params == LbHealthParams() and health.params.capacity is None


def test_params_of_another_fault_type_are_refused() -> None:
    with pytest.raises(ValueError, match="enactor_stall fault takes StallParams, not NoParams"):
        Fault.new(FaultType.ENACTOR_STALL, "use1-az1", 5, NoParams())
    with pytest.raises(ValueError, match="lb_health takes no param"):
        Fault.from_json(json.dumps({"id": "x", "type": "lb_health", "target": "all",
                                    "started_ms": 0, "expires_ms": 1,
                                    "params": {"point": "after_check"}}))
