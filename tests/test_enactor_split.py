"""bench.enactor_split names each EVALSHA by its Lua script and sums Redis's time per script."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench.enactor_split import main, script_names, split
from services.store import zone as zone_store


def test_every_script_the_enactor_runs_is_named_by_its_sha() -> None:
    names = script_names()
    change_batch = hashlib.sha1(zone_store._script("change_batch.lua").encode()).hexdigest()
    assert names[change_batch] == "change_batch.lua"
    assert "reads.READ_ENDPOINTS" in names.values()
    assert "reads.OLD_TREES" in names.values() and "history._XADD_MANY" in names.values()


def test_slowlog_entries_are_summed_per_script_and_command() -> None:
    sha = next(iter(script_names()))
    entries = [
        {"command": f"EVALSHA {sha} 3 a b c", "duration": 100},
        {"command": f"EVALSHA {sha} 3 a b c", "duration": 300},
        {"command": b"HGET h f", "duration": 2},
        {"command": "EVALSHA 0123456789abcdef0123 0", "duration": 50},
    ]
    result = split(entries, script_names())
    assert result["change_batch.lua"] == {"calls": 2, "total_s": 0.0, "usec_per_call": 200.0}
    assert result["hget"]["calls"] == 1
    assert result["0123456789ab"]["usec_per_call"] == 50.0  # an unknown script, by its sha
    assert next(iter(result)) == "change_batch.lua"  # the costliest first


def test_too_few_endpoints_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--endpoints", "3", "--out", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2
    assert not (tmp_path / "x.json").exists()
