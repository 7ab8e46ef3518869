"""bench.lua_decoders prices decoding inside Redis's Lua, on the enactor's real batches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.lua_decoders import main, measure
from services.store import zone as zone_store


def test_a_short_run_prices_both_decoders_on_one_real_slice(tmp_path: Path) -> None:
    result = asyncio.run(measure(tmp_path, rounds=1, scale=0.01))
    # one slice of the enactor's batches, each its lock, tree and alias changes at least
    assert result["batches"] == zone_store.BATCHES_PER_CALL
    assert result["changes"] >= 3 * result["batches"]
    assert 0 < result["slice_bytes"]["msgpack"] < result["slice_bytes"]["json"]
    assert set(result["us_per_batch"]) == {"cjson", "cmsgpack"}
    assert set(result["us_per_alias"]) == {"alias_cjson", "alias_pattern"}


def test_rounds_below_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--rounds", "0"])
    assert exit_.value.code == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err
