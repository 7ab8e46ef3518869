"""The benchmark scripts still run (a tiny, untimed smoke run; no figure is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run
from bench.common import BenchError
from tests.conftest import require_tool


def test_quick_bench_runs_every_section_and_writes_json(tmp_path: Path) -> None:
    require_tool("dnsperf")
    out = tmp_path / "bench.json"
    args = ["--quick", "--out", str(out)]
    try:
        assert run.main(args) == 0
    except BenchError as e:  # pragma: no cover - a reference server missing on this machine
        pytest.skip(str(e))
    result = json.loads(out.read_text())
    dns = result["dns"]["results"]
    assert dns["max/ours"]["sent_total"] > 0 and dns["max/dnslib"]["sent_total"] > 0
    assert result["dns"]["propagation_idle"]["samples"] == 20
    assert result["enactor"]["cluster_config"]["committed"] == 200
    assert result["memory"]["record_sets"] > 2500
    assert result["loadgen"]["at_2000"]["sent"] > 0
    assert {row["target"] for row in result["targets"]}
