"""bench.dns_syscalls' pure parts: perf's counts read, and divided per query."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import BenchError
from bench.dns_syscalls import main, parse_perf_stat, per_query

PERF = """# started on Mon Dec  7 03:52:20 2026

58420,,context-switches,8000512345,100.00,,
4210.33,msec,task-clock,4210330000,100.00,0.526,CPUs utilized
61402,,syscalls:sys_enter_epoll_pwait,8000501234,100.00,,
<not counted>,,syscalls:sys_enter_recvfrom,0,0.00,,
0,,syscalls:sys_enter_recvmsg,8000501234,100.00,,
56210,,syscalls:sys_enter_recvmmsg,8000501234,100.00,,
<not supported>,,syscalls:sys_enter_epoll_pwait2,0,0.00,,
"""


def test_perf_counts_are_read_and_the_uncounted_left_out() -> None:
    counts = parse_perf_stat(PERF)
    assert counts == {"context-switches": 58420.0, "task-clock": 4210.33,
                      "epoll_pwait": 61402.0, "recvmsg": 0.0, "recvmmsg": 56210.0}


def test_counts_per_query_with_cpu_in_microseconds() -> None:
    rates = per_query(parse_perf_stat(PERF), 200_000)
    assert rates == {"cpu_us": 21.05, "context-switches": 0.292, "epoll_pwait": 0.307,
                     "recvmmsg": 0.281}
    with pytest.raises(BenchError, match="no query"):
        per_query({}, 0)


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    for args in (["--rate", "0"], ["--rounds", "0"], ["--duration", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--out", str(tmp_path / "x.json")])
        assert exit_info.value.code == 2
