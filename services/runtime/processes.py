"""Ending a child process the one way every harness here does it."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1


def _prctl() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
    except (OSError, AttributeError, TypeError):  # not Linux: no such call
        return None


_PRCTL = _prctl()


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGCONT (a paused process cannot act on SIGTERM), SIGTERM, then SIGKILL after a wait."""
    terminate_all([process], timeout_s)


def terminate_all(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """:func:`terminate` for several processes at once: all are signalled, then each is waited
    for until one shared deadline, and any still running then is killed."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ending_with_this_process() -> Callable[[], None] | None:
    """``preexec_fn`` for a child that must not outlive this process: the child gets SIGTERM
    when this process ends, however it ends (SIGKILL, a crash), so a harness killed part-way
    leaves no server behind. Linux only (elsewhere nothing happens). The kernel tells the child
    when the *thread* that started it ends, so only a child started from the main thread is
    tied (None from any other thread, whose end would end the child). A parent that ended
    before the child was tied is seen, and the child ends at once."""
    if _PRCTL is None or threading.current_thread() is not threading.main_thread():
        return None
    parent, prctl = os.getpid(), _PRCTL

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return die_with_parent
