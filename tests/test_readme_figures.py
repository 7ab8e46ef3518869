"""README's demo and matrix figures are the committed results of 'dnsrace repeat', as
bench/readme_figures.py renders them (no figure typed in by hand)."""

from __future__ import annotations

from pathlib import Path

from bench.readme_figures import RESULTS, blocks

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_quotes_every_block_of_the_committed_results() -> None:
    found = blocks()
    assert set(found) == {"demo summary", "demo table", "matrix table", "explorer table",
                          "nemesis summary"}
    for name, text in found.items():
        assert text in README, f"README's {name} is not bench/results' (python -m " \
                               "bench.readme_figures prints it)"
    for kind in ("demo", "matrix", "explore", "run scenarios/nemesis.toml"):
        assert f"dnsrace repeat {kind}" in README
    for name in ("demo", "matrix", "explorer", "nemesis"):
        assert (RESULTS / f"{name}.json").exists()
