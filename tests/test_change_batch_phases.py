"""bench.change_batch_phases cuts change_batch.lua after each phase and prices each phase."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.change_batch_phases import PHASES, main, measure, phase_costs, scripts
from services.store import zone as zone_store


def test_each_cut_ends_the_script_before_its_phase() -> None:
    source = zone_store._script("change_batch.lua")
    copies = scripts(source)
    assert list(copies) == list(PHASES) and copies["whole"] == source
    lengths = []
    for phase in PHASES[:-1]:
        head = copies[phase].split("do return '[]' end\n")[0]
        assert copies[phase].count("do return '[]' end") == 1
        lengths.append(len(head))
    assert lengths == sorted(lengths)  # decode before prefetch before judge


def test_phase_costs_are_the_differences_of_the_cumulative_figures() -> None:
    costs = phase_costs({"decode": 10.0, "prefetch": 27.5, "judge": 39.0, "whole": 51.25})
    assert costs == {"decode": 10.0, "prefetch": 17.5, "judge": 11.5, "write_and_publish": 12.2}


def test_a_small_run_prices_every_phase_and_applies_the_plans(tmp_path: Path) -> None:
    result = asyncio.run(measure(tmp_path, endpoints=40, rounds=2))
    cumulative = result["redis_cpu_us_per_endpoint_cumulative"]
    assert set(cumulative) == set(PHASES) and result["windows"] == 2
    assert cumulative["whole"] > 0


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    for args in (["--endpoints", "3"], ["--rounds", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--out", str(tmp_path / "x.json")])
        assert exit_info.value.code == 2
