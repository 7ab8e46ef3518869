"""bench.enactor_ab: the summary of interleaved runs, and its errors for a user's mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.enactor_ab import main, summarise


def _run(walls: list[float], client: float, redis: float) -> dict[str, object]:
    wall = sorted(walls)[1]
    return {"enactor": {"cluster_config_walls_s": sorted(walls),
                        "cluster_config": {"wall_s": wall, "client_cpu_s": client,
                                           "redis_cpu_s": redis},
                        "cluster_config_with_cleanup": {"wall_s": 2 * wall},
                        "no_persistence": {"wall_s": wall - 1}}}


def test_the_summary_gives_every_rounds_wall_and_the_median_of_each_figure() -> None:
    summary = summarise({"baseline": [_run([20, 22, 30], 9, 16), _run([18, 19, 21], 8, 13)],
                         "ours": [_run([12, 16, 17], 7, 13), _run([14, 15, 18], 8, 11)]})
    assert summary["baseline"]["rounds_s"] == [18, 19, 20, 21, 22, 30]
    assert summary["baseline"]["median_round_s"] == 20.5
    assert summary["ours"]["round_s"] == {"median": 15.5, "runs": [16, 15]}
    assert summary["ours"]["redis_cpu_s"]["median"] == 12
    assert summary["ratio_median_round"] == round(15.5 / 20.5, 3)


def test_an_unknown_baseline_or_missing_runs_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--baseline-rev", "no-such-commit", "--out-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "is no commit of this repository" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--baseline-rev", "HEAD", "--summarise-only", "--out-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "baseline-1.json" in capsys.readouterr().err
