"""The race on the real cluster: legacy loses the regional name until repair; safe does not.

These run the demo's own phases (services.demo.run_mode) against clusters on ports of their
own, then read the history with the checker, as ``dnsrace check`` would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services import checker, history
from services.checker import Invariant
from services.config import Settings
from services.demo import ModeResult, run_mode
from services.redis_server import EmbeddedRedis
from tests.conftest import cluster_settings

pytestmark = pytest.mark.cluster


async def run_and_check(tmp_path: Path, mode: str) -> tuple[ModeResult, list[checker.Violation],
                                                              Settings]:
    settings = cluster_settings(tmp_path)
    result = await run_mode(settings, mode, tmp_path, rate=150.0)  # type: ignore[arg-type]
    # The cluster is gone; its Redis kept the history in its append-only file.
    redis = EmbeddedRedis(tmp_path / mode / "redis", port=settings.redis_port).start()
    try:
        client = aioredis.Redis.from_url(redis.url, decode_responses=True)
        events = [e for _, e in await history.RedisHistory(client).read()]
        await client.aclose()
    finally:
        redis.stop()
    return result, checker.check(events), settings


async def test_legacy_race_empties_the_name_until_an_operator_repairs_it(
        tmp_path: Path) -> None:
    result, violations, settings = await run_and_check(tmp_path, "legacy")
    assert result.problems == []
    assert result.reproduced
    assert result.empty_answers > 0
    assert result.time_to_failing_s is not None
    assert result.time_to_failing_s <= settings.ttl_s + 2
    assert result.failure_ratio_peak >= 0.9
    assert result.rejected_while_broken.get("alias_target_missing", 0) > 0
    assert result.recovery_s is not None
    assert result.recovery_s <= settings.ttl_s + settings.negative_ttl_s + 2
    found = {v.invariant for v in violations}
    assert {Invariant.I1, Invariant.I3} <= found


async def test_safe_mode_holds_under_the_same_race(tmp_path: Path) -> None:
    result, violations, _ = await run_and_check(tmp_path, "safe")
    assert result.problems == []
    assert not result.reproduced
    assert result.race.stale_flips == 0 and result.race.live_deletions == 0
    assert result.empty_answers == 0
    assert result.failed_requests == 0
    assert violations == []
