"""Shared fixtures: a real Redis server (embedded binary by default) for every integration test."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services import config
from services.config import Settings
from services.runtime.redis_server import EmbeddedRedis
from services.runtime.service import REDIS_CONNECT_TIMEOUT_S
from services.store.zone import ZoneKeys, ZoneStore


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    # bounded as the services' client is (its close too), without its retries
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True,
                                     socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    """A key prefix of its own per test, so tests never see each other's zone."""
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class ManualClock:
    """A clock the test sets, in ms (a :class:`services.core.clock.Clock`)."""

    now: int

    def now_ms(self) -> int:
        return self.now


INCIDENT_MS = 1_760_942_880_000
"""2025-10-20 06:48 UTC (11:48 PM PDT): where a test's clock starts unless it needs another."""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(INCIDENT_MS)


@pytest.fixture
def zone(redis_client: aioredis.Redis, prefix: str, clock: ManualClock) -> ZoneStore:
    """A zone store under its own prefix, on the test's clock (the wall clock is never read)."""
    return ZoneStore(redis_client, ZoneKeys(prefix), clock=clock)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install it, or run .ci/run)")
    return path


REPO = Path(__file__).resolve().parent.parent


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 5.0,
                     what: str = "condition") -> None:
    """Check ``condition`` until it holds, failing the test after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    async def check() -> bool:
        # A check that itself hangs (a stuck Redis call) fails at the deadline too.
        try:
            return await asyncio.wait_for(condition(), max(0.1, deadline - loop.time()))
        except TimeoutError:
            return False

    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def settings_db(redis_server: EmbeddedRedis, tmp_path: Path) -> Settings:
    """Settings whose Redis is database 1 of the test server, flushed for this test.

    For code that uses the default key prefix (services as they run in the cluster).
    """
    import redis

    with redis.Redis(port=redis_server.port, db=1) as sync:
        sync.flushdb()
    return config.load({}, redis_url=f"redis://127.0.0.1:{redis_server.port}/1",
                       state_dir=str(tmp_path / "state"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (CI=true) every tool is installed, so a skipped test is a failure."""
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; in CI nothing may skip",
                            red=True)
        session.exitstatus = 1


def cluster_settings(root: Path, **overrides: object) -> Settings:
    """Settings for a whole cluster on ports of its own (a running demo is not disturbed)."""
    from services.runtime.ports import free_port, metrics_port_base

    values: dict[str, object] = {
        "redis_port": free_port(), "dns_port": free_port(), "control_port": free_port(),
        "metrics_port_base": metrics_port_base(), "lb_network": "127.0.21", "lb_port": free_port(),
        "state_dir": str(root / "state"),
    }
    values.update(overrides)
    return config.load({}, **values)


# The project image (tests/images.py), built once per session for every module that asks for
# it: a session fixture imported into each test module would be built once per module.
from tests.images import image  # noqa: E402,F401
