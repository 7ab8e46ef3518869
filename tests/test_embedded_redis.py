"""The embedded Redis ends with the harness that started it, however the harness ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.runtime.redis_server import port_answers

HARNESS = """
import sys, time
from pathlib import Path
from services.runtime.redis_server import EmbeddedRedis
server = EmbeddedRedis(Path(sys.argv[1])).start()
print(server.port, server.process.pid, flush=True)
time.sleep(600)  # until killed: the test kills it
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except FileNotFoundError:
        return True
    return state == "Z"  # ended, not yet reaped by its new parent


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_harness_killed_part_way_leaves_no_redis_behind(tmp_path: Path,
                                                          how: signal.Signals) -> None:
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path / "redis")],
                               stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    redis_pid = 0
    try:
        assert harness.stdout is not None
        port, redis_pid = map(int, harness.stdout.readline().split())
        assert port_answers(port), "the harness's Redis answers while the harness runs"
        harness.send_signal(how)
        harness.wait(10)
        deadline = time.monotonic() + 10
        while not (_gone(redis_pid) and not port_answers(port)):
            assert time.monotonic() < deadline, f"Redis (pid {redis_pid}) outlived its harness"
            time.sleep(0.05)
    finally:
        harness.kill()
        harness.wait()
        if redis_pid and not _gone(redis_pid):  # the test failed: end the orphan anyway
            os.kill(redis_pid, signal.SIGKILL)
