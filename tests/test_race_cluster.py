"""The race on the real cluster: legacy loses the regional name until repair; safe does not.

These run the demo's own phases (services.tools.demo.run_mode) against clusters on ports of their
own, then read the history with the checker, as ``dnsrace check`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.config import Settings
from services.core import checker, names
from services.core.checker import Invariant
from services.runtime.cluster import cluster_env
from services.runtime.redis_server import EmbeddedRedis
from services.store import history
from services.tools.demo import Companion, ModeResult, run_mode
from tests.conftest import cluster_settings, require_tool, wait_until

pytestmark = pytest.mark.cluster


async def run_and_check(tmp_path: Path, mode: str, companion: Companion | None = None
                        ) -> tuple[ModeResult, list[checker.Violation], Settings]:
    settings = cluster_settings(tmp_path)
    result = await run_mode(settings, mode, tmp_path, rate=150.0,  # type: ignore[arg-type]
                            companion=companion)
    # The cluster is gone; its Redis kept the history in its append-only file.
    redis = EmbeddedRedis(tmp_path / mode / "redis", port=settings.redis_port).start()
    try:
        client = aioredis.Redis.from_url(redis.url, decode_responses=True)
        events = [e for _, e in await history.RedisHistory(client).read()]
        await client.aclose()
    finally:
        redis.stop()
    return result, checker.check(events), settings


class SdkClient:
    """loadgen/sdk_client.py as a real process, PutItem/GetItem through the SDK's resolver."""

    def __init__(self, events: Path) -> None:
        self.events = events
        self.log = events.with_suffix(".log")
        self.process: asyncio.subprocess.Process | None = None

    def __call__(self, settings: Settings) -> SdkClient:
        self.settings = settings
        return self

    async def __aenter__(self) -> SdkClient:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadgen.sdk_client", "--rate", "10", "--duration", "120",
            "--events", str(self.events), env={**os.environ, **cluster_env(self.settings)},
            stdout=asyncio.subprocess.DEVNULL, stderr=self.log.open("wb"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None

        async def last_call_ok() -> bool:
            calls = self.calls()
            return bool(calls) and calls[-1]["outcome"] == "ok"

        # The demo ends when its own clients recover; give the SDK's caches the same chance.
        await wait_until(last_call_ok, 15.0, "the SDK client to succeed again")
        self.process.terminate()
        await self.process.wait()

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events.read_text().splitlines()]


class DigPoller:
    """``dig`` asking for the regional name every 0.3 s, as an operator would."""

    def __init__(self) -> None:
        self.answers: list[tuple[float, float, str, int]] = []
        """(asked at, answered at, status, answer count), wall-clock times."""
        self.task: asyncio.Task[None] | None = None

    def __call__(self, settings: Settings) -> DigPoller:
        self.command = [require_tool("dig"), "@127.0.0.1", "-p", str(settings.dns_port),
                        "+time=1", "+tries=1", names.REGIONAL, "A"]
        return self

    async def poll(self) -> None:
        while True:
            asked = time.time()
            dig = await asyncio.create_subprocess_exec(
                *self.command, stdout=asyncio.subprocess.PIPE)
            out = (await dig.communicate())[0].decode()
            status = out.split("status: ")[1].split(",")[0] if "status: " in out else "none"
            count = int(out.split("ANSWER: ")[1].split(",")[0]) if "ANSWER: " in out else -1
            self.answers.append((asked, time.time(), status, count))
            await asyncio.sleep(0.3)

    async def __aenter__(self) -> DigPoller:
        self.task = asyncio.create_task(self.poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def together(*companions: Companion) -> Companion:
    @contextlib.asynccontextmanager
    async def both(settings: Settings) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for companion in companions:
                await stack.enter_async_context(companion(settings))
            yield

    return both


async def test_legacy_race_empties_the_name_until_an_operator_repairs_it(
        tmp_path: Path) -> None:
    sdk = SdkClient(tmp_path / "sdk.jsonl")
    dig = DigPoller()
    result, violations, settings = await run_and_check(tmp_path, "legacy", together(dig, sdk))
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
    # dig during the outage: NOERROR with zero answers; before it and after repair: addresses.
    assert result.empty_since is not None and result.repaired_at is not None
    # Only digs asked after the poller saw the name empty and answered before the repair began
    # (its first flip is live while it still restores the other endpoints).
    assert result.repair_started_at is not None
    outage = [(s, n) for asked, done, s, n in dig.answers
              if result.empty_since <= asked and done < result.repair_started_at]
    assert outage and set(outage) == {("NOERROR", 0)}
    assert all(s == "NOERROR" and n > 0 for asked, done, s, n in dig.answers
               if done < result.empty_since - 1 or asked > result.repaired_at + 1)
    # The AWS SDK saw the outage as applications did: DNS resolution errors, then recovery.
    assert result.empty_since is not None and result.repaired_at is not None
    calls = sdk.calls()
    assert all(c["outcome"] == "ok" for c in calls if c["at"] < result.empty_since)
    first_failure = next(c for c in calls if c["outcome"] != "ok")
    assert first_failure["at"] - result.empty_since <= settings.ttl_s + 2
    broken = [c for c in calls if first_failure["at"] <= c["at"] < result.repaired_at]
    assert broken and {c["outcome"] for c in broken} == {"dns_error"}
    healed = next(c for c in calls if c["at"] > result.repaired_at and c["outcome"] == "ok")
    assert healed["at"] - result.repaired_at <= settings.ttl_s + settings.negative_ttl_s + 2
    assert all(c["outcome"] == "ok" for c in calls if c["at"] >= healed["at"])


async def test_safe_mode_holds_under_the_same_race(tmp_path: Path) -> None:
    result, violations, _ = await run_and_check(tmp_path, "safe")
    assert result.problems == []
    assert not result.reproduced
    assert result.race.stale_flips == 0 and result.race.live_deletions == 0
    assert result.empty_answers == 0
    # A poll over UDP with a 0.5-s timeout can be lost to the scheduler of a loaded 2-core
    # machine; that is not an empty answer, and it stays rare.
    assert result.unanswered_polls <= max(1, result.dns_polls // 100)
    assert result.failed_requests == 0
    assert violations == []
