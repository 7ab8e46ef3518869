"""bench.change_batch_ab sends a baseline commit's change_batch.lua as that commit sent it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.change_batch_ab import WINDOW, BaselineLayout, baseline_layout, main, measure
from bench.common import BenchError
from services.store import zone as zone_store

ONE_BATCH_HEADER = """-- Apply one change batch to the zone, all or nothing.
-- KEYS[1] record sets hash   field "<name>|<TYPE>" -> canonical JSON value
-- KEYS[2] zone serial        integer, +1 per committed batch
-- KEYS[3] alias references   field "<target name>" -> number of ALIAS sets naming it
-- ARGV[1] the batch as JSON:
-- ARGV[2] change notification channel
-- ARGV[3] now_ms: the writer's clock, passed in; the only time this script decides by
"""
"""The header of change_batch.lua up to e01fe25 (one batch per call, three keys)."""


def test_the_layout_is_read_from_the_script_header() -> None:
    assert baseline_layout(ONE_BATCH_HEADER) == BaselineLayout(1, 3)
    several = zone_store._script("change_batch.lua")
    assert baseline_layout(several) == BaselineLayout(zone_store.BATCHES_PER_CALL, 4)
    without_index = "\n".join(line for line in several.splitlines()
                              if not line.startswith("-- KEYS[4]"))
    assert baseline_layout(without_index) == BaselineLayout(zone_store.BATCHES_PER_CALL, 3)
    with pytest.raises(BenchError, match="neither ARGV layout"):
        baseline_layout("return 1\n")


def test_head_against_itself_applies_both_sides_windows(tmp_path: Path) -> None:
    """HEAD's script as the baseline (its multi-batch layout, four keys): every batch of both
    sides is committed (a refusal raises) and both are priced, window by window."""
    result = asyncio.run(measure(tmp_path, endpoints=4 * WINDOW, rev="HEAD", rounds=1))
    assert result["baseline_batches_per_call"] == zone_store.BATCHES_PER_CALL
    assert result["batches"] == {"baseline": 2 * WINDOW, "ours": 2 * WINDOW}
    for side in ("baseline", "ours"):
        figures = result["redis_cpu_us_per_endpoint"][side]
        assert figures["windows"] == 2 and figures["median"] > 0


def test_bad_arguments_are_clear_errors(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cases = (["--baseline-rev", "no-such-commit"], ["--rounds", "0"], ["--endpoints", "10"])
    for args in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--out", str(tmp_path / "x.json")])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--baseline-rev no-such-commit: git has no services/store/lua/change_batch.lua" in err
    assert not (tmp_path / "x.json").exists()
