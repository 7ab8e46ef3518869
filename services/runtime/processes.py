"""Ending a child process the one way every harness here does it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGCONT (a paused process cannot act on SIGTERM), SIGTERM, then SIGKILL after a wait."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
