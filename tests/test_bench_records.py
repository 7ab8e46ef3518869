"""What a bench result records beside its figures: the split of a process's CPU into its own
code (user) and the kernel's (system), read from /proc for real processes (whether a server's
CPU per query is its code's or its system calls'), and the files changed since its commit."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.common import changed_files, parse_task_times, tree_user_system_seconds

BURN_USER = """
import time
end, n = time.process_time() + 0.4, 0
while n % 200_000 or time.process_time() < end:  # arithmetic; the clock rarely (a system call)
    n += 1
"""
BURN_SYSTEM = """
import os, time
fd, buf = os.open("/dev/zero", os.O_RDONLY), bytearray(8 << 20)
end = time.process_time() + 0.4
while time.process_time() < end:
    os.readv(fd, [buf])  # the kernel clears 8 MiB: system time
"""


def test_the_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() -> None:
    line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 731 59 0 0 20 0 3 0 99 1 2"
    assert parse_task_times(line) == (731, 59)


def _split_of(code: str) -> tuple[float, float]:
    """(user, system) seconds of a child running ``code``, read just before it ends."""
    child = subprocess.Popen([sys.executable, "-c", code + "\nimport sys\nsys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while sum(split := tree_user_system_seconds(child.pid)) < 0.35:
            assert time.monotonic() < deadline, "the child never used its CPU"
            time.sleep(0.05)
        return split
    finally:
        child.communicate(b"")


@pytest.mark.parametrize(("code", "mostly"), [(BURN_USER, "user"), (BURN_SYSTEM, "system")])
def test_cpu_in_a_process_own_code_and_in_the_kernel_are_told_apart(code: str,
                                                                     mostly: str) -> None:
    user, system = _split_of(code)
    own, other = (user, system) if mostly == "user" else (system, user)
    assert own >= 0.25 and own > 2 * other, (user, system)


def test_a_result_names_the_files_it_measured_beside_its_commit() -> None:
    porcelain = " M bench/common.py\nM  dns_server/udp_batch.py\nR  old.py -> new/place.py\n"
    assert changed_files(porcelain) == ["bench/common.py", "dns_server/udp_batch.py",
                                        "new/place.py"]
    assert changed_files("") == []
