"""The benchmark scripts still run (a tiny, untimed smoke run; no figure is asserted).

Only a missing tool skips; any other bench error (dnsperf failing, a server not answering)
fails the test, in CI and outside it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bench import run
from bench.common import BenchError, ToolMissing
from tests.conftest import require_tool


def quick_bench(args: list[str]) -> int:
    """``bench.run`` as the smoke test runs it: a missing tool skips, anything else is raised."""
    try:
        return run.main(args)
    except ToolMissing as e:  # a reference server missing on this machine
        pytest.skip(str(e))


def test_quick_bench_runs_every_section_and_writes_json(tmp_path: Path) -> None:
    require_tool("dnsperf")
    out = tmp_path / "bench.json"
    assert quick_bench(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    dns = result["dns"]["results"]
    assert dns["max/ours"]["sent_total"] > 0 and dns["max/dnslib"]["sent_total"] > 0
    assert result["dns"]["propagation_idle"]["samples"] == 20
    for reference in ("nsd", "knot"):  # the control under the same churn as ours
        assert dns[f"rate/{reference}+churn"]["sent_total"] > 0
    for server in ("ours", "nsd"):  # CPU per query split: the server's code, the kernel's
        row = dns[f"rate/{server}"]
        # The split is counted in clock ticks (10 ms): in a 1-s run at 5,000 q/s one tick is
        # 2 us a query, and the C fast path's user time can be under one tick (it was 0 in a
        # CI run). So: the kernel's share is seen, and the two shares add up to the total
        # within two ticks a query.
        tick_us = 10_000 * result["dns"]["rounds"] / row["sent_total"]
        user, system = row["user_per_query_us_median"], row["system_per_query_us_median"]
        assert user >= 0 and system > 0
        assert abs(user + system - row["cpu_per_query_us_median"]) <= 2 * tick_us
    assert result["enactor"]["cluster_config"]["committed"] == 200
    assert result["memory"]["record_sets"] > 2500
    for path in ("hit", "miss"):  # the large zone's CPU per query beside the small zone's
        compared = result["memory"]["cpu_large_vs_small"][path]
        assert compared["rounds"] == 1 and compared["lost_total"] == 0
        assert compared["response_bytes"]["large"] == compared["response_bytes"]["small"]
    assert result["loadgen"]["at_2000"]["sent"] > 0
    assert {row["target"] for row in result["targets"]}


def test_a_failing_dnsperf_fails_the_smoke_run_instead_of_skipping_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dnsperf that is installed but fails (a regression in how the bench calls it).
    fake = tmp_path / "bin" / "dnsperf"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'dnsperf: broken on purpose' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BenchError, match="dnsperf failed") as failed:
        quick_bench(["--quick", "--only", "dns", "--out", str(tmp_path / "bench.json")])
    assert not isinstance(failed.value, ToolMissing)
