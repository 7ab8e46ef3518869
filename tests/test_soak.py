"""Soaks on the real cluster: safe holds under process faults; legacy is caught by the same eyes."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.checker import Invariant
from services.tools.soak import FAULT_TYPES, run_soak
from tests.conftest import cluster_settings

pytestmark = pytest.mark.cluster


async def test_safe_mode_survives_kills_pauses_stalls_and_redis_restarts(tmp_path: Path) -> None:
    report = await run_soak(cluster_settings(tmp_path), "safe", 30.0, seed=7, workdir=tmp_path)
    print(report.to_text())
    assert report.problems == [] and report.unexpected_restarts == []
    assert sum(report.faults.values()) >= 6
    assert len(report.faults) >= 4                   # most kinds of fault, not one kind
    assert report.dns_reads > 100 and report.client_resolutions > 0
    assert report.empty_answers == 0
    assert report.stale_answers == 0
    assert report.violations == []
    assert report.converged_after_s is not None and report.converged_after_s < 5


async def test_the_same_soak_sees_legacy_break_under_stalls(tmp_path: Path) -> None:
    report = await run_soak(cluster_settings(tmp_path), "legacy", 25.0, seed=7,
                            workdir=tmp_path, types=("enactor_stall",))
    print(report.to_text())
    assert report.problems == []
    assert report.faults["enactor_stall"] >= 3
    assert Invariant.I2 in {v.invariant for v in report.violations}


def test_every_fault_type_is_known_to_the_nemesis() -> None:
    assert set(FAULT_TYPES) == {"enactor_kill", "enactor_pause", "enactor_stall", "lock_delay",
                                "redis_restart", "planner_kill"}
