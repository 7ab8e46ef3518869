"""A service's life: its jobs in a task group, every failure surfacing, an orderly SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.config import load
from services.runtime.service import ServiceContext, run_until_stopped
from services.runtime.swallowed import swallowed
from tests.conftest import REPO

SERVICE = '''
import asyncio, sys
from services.config import load
from services.runtime.service import run_service, run_until_stopped

async def forever() -> None:
    await asyncio.Event().wait()

async def broken() -> None:
    await asyncio.sleep(0.05)
    raise RuntimeError("the job broke")

async def clean(ctx) -> None:
    ctx.ready = True
    print("ready", flush=True)
    await run_until_stopped(ctx, forever(), forever())

async def deaf(ctx) -> None:
    print("ready", flush=True)
    await forever()  # never looks at ctx.stopping

async def failing(ctx) -> None:
    await run_until_stopped(ctx, forever(), broken())

main = {"clean": clean, "deaf": deaf, "failing": failing}[sys.argv[1]]
sys.exit(run_service(main, load({}), "lifecycle", stop_timeout_s=0.5))
'''


async def start(tmp_path: Path, kind: str) -> asyncio.subprocess.Process:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(script), kind, cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str]:
    try:
        _, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def ready(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 10) == b"ready\n"


async def test_sigterm_stops_every_job_and_the_process_exits_0(tmp_path: Path) -> None:
    process = await start(tmp_path, "clean")
    await ready(process)
    process.send_signal(signal.SIGTERM)
    code, err = await finish(process)
    assert code == 0 and "stopping" in err and "stopped" in err


async def test_a_service_deaf_to_sigterm_is_cancelled_after_the_stop_timeout(
        tmp_path: Path) -> None:
    process = await start(tmp_path, "deaf")
    await ready(process)
    process.send_signal(signal.SIGTERM)
    code, err = await finish(process)
    assert code == 0 and "did not stop within 0.5 s; cancelled" in err


async def test_a_failing_job_ends_the_process_with_its_error(tmp_path: Path) -> None:
    code, err = await finish(await start(tmp_path, "failing"))
    assert code == 1
    assert "lifecycle failed" in err and "RuntimeError: the job broke" in err


async def test_a_failed_job_cancels_its_siblings_and_raises_its_own_error() -> None:
    ctx = ServiceContext(load({}), "test")
    sibling_cancelled = asyncio.Event()

    async def sibling() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            sibling_cancelled.set()
            raise

    async def broken() -> None:
        await asyncio.sleep(0)
        raise KeyError("gone")

    with pytest.raises(KeyError, match="gone"):
        await asyncio.wait_for(run_until_stopped(ctx, sibling(), broken()), 5)
    assert sibling_cancelled.is_set()


async def test_stopping_cancels_every_job_and_returns() -> None:
    ctx = ServiceContext(load({}), "test")
    cancelled: list[str] = []

    async def job(name: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def stop_soon() -> None:
        await asyncio.sleep(0)
        ctx.stopping.set()

    await asyncio.wait_for(run_until_stopped(ctx, job("a"), job("b"), stop_soon()), 5)
    assert sorted(cancelled) == ["a", "b"]


def test_a_swallowed_error_place_starts_at_zero_and_counts() -> None:
    counter = swallowed("lifecycle_test")
    assert REGISTRY.get_sample_value("dnsrace_errors_swallowed_total",
                                     {"where": "lifecycle_test"}) == 0
    counter.inc()
    assert REGISTRY.get_sample_value("dnsrace_errors_swallowed_total",
                                     {"where": "lifecycle_test"}) == 1
    with pytest.raises(ValueError, match="snake_case"):
        swallowed("Fault Gate!")
