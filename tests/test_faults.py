"""Which faults stall which enactor where: pure matching rules and request validation."""

from __future__ import annotations

import pytest

from services.config import load
from services.control.requests import FaultRequestError, parse_fault_request
from services.core import names
from services.core.faults import Fault, FaultType, StallPoint, matches


def stall(point: StallPoint, **params: object) -> Fault:
    return Fault.new(FaultType.ENACTOR_STALL, "use1-az2", 30, {"point": point, **params})


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


@pytest.mark.parametrize("value", [-1, "7", 2.5, True])
def test_min_generation_must_be_a_whole_number(value: object) -> None:
    body = {"type": "enactor_stall", "target": "use1-az2", "duration_s": 5,
            "params": {"point": "during_cleanup", "min_generation": value}}
    with pytest.raises(FaultRequestError, match="min_generation"):
        parse_fault_request(body, load({}))
