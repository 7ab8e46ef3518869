"""The 100,000-endpoint plan, this checkout against another commit's, runs interleaved.

The machine's noise from one run to the next is tens of percent, so a before-and-after is
only worth its figures when both sides take turns in one session: this extracts the other
commit with ``git archive``, then runs ``bench.run --only enactor`` (three measured rounds in
the cluster's Redis configuration, a round whose clean-up deletes a generation, one without
persistence) for the baseline and for this checkout, alternating, and writes every run's
JSON beside a summary of the medians.

    .venv/bin/python -m bench.enactor_ab --baseline-rev 4441cad [--runs 3] \\
        [--endpoints 100000] --out-dir bench/results/issue16-enactor-index
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import PYTHON, REPO, machine

FIGURES = {
    "round_s": ("cluster_config", "wall_s"),
    "client_cpu_s": ("cluster_config", "client_cpu_s"),
    "redis_cpu_s": ("cluster_config", "redis_cpu_s"),
    "round_with_cleanup_s": ("cluster_config_with_cleanup", "wall_s"),
    "round_no_persistence_s": ("no_persistence", "wall_s"),
}
"""Each figure summarised: the section of ``bench.run``'s enactor result and its key."""


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per side: every measured round's wall, and the median over runs of each figure."""
    out: dict[str, Any] = {}
    for side, results in runs.items():
        enactors = [r["enactor"] for r in results]
        rounds = sorted(w for e in enactors for w in e["cluster_config_walls_s"])
        out[side] = {"runs": len(enactors), "rounds_s": rounds,
                     "median_round_s": statistics.median(rounds)}
        for name, (section, key) in FIGURES.items():
            values = [e[section][key] for e in enactors]
            out[side][name] = {"median": statistics.median(values), "runs": values}
    if {"baseline", "ours"} <= out.keys():
        out["ratio_median_round"] = round(
            out["ours"]["median_round_s"] / out["baseline"]["median_round_s"], 3)
    return out


def _run(checkout: Path, endpoints: int, out: Path) -> dict[str, Any]:
    subprocess.run([PYTHON, "-m", "bench.run", "--only", "enactor", "--enactor-endpoints",
                    str(endpoints), "--enactor-sweep", "", "--out", str(out)],
                   cwd=checkout, check=True, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline-rev", required=True, help="the commit to compare against")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (3)")
    parser.add_argument("--endpoints", type=int, default=100_000)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--summarise-only", action="store_true",
                        help="run nothing: summarise the runs' JSON already in --out-dir")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.endpoints < 10:
        parser.error("--runs must be at least 1 and --endpoints at least 10")
    rev = subprocess.run(["git", "rev-parse", "--short", args.baseline_rev], cwd=REPO,
                         capture_output=True, text=True)
    if rev.returncode:
        parser.error(f"--baseline-rev {args.baseline_rev!r} is no commit of this repository")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.summarise_only:
        try:
            runs = {side: [json.loads((args.out_dir / f"{side}-{i}.json").read_text())
                           for i in range(1, args.runs + 1)] for side in ("baseline", "ours")}
        except (OSError, ValueError) as e:
            parser.error(f"--summarise-only: {e}")
    else:
        runs = _interleaved(rev.stdout.strip(), args.runs, args.endpoints, args.out_dir)
    summary = {"argv": sys.argv[1:] if argv is None else argv, "machine": machine(),
               "baseline_rev": rev.stdout.strip(), "endpoints": args.endpoints,
               **summarise(runs)}
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "machine"}, indent=1))
    return 0


def _interleaved(rev: str, count: int, endpoints: int, out_dir: Path
                 ) -> dict[str, list[dict[str, Any]]]:
    """``count`` runs of each side, the baseline first in each pair."""
    with tempfile.TemporaryDirectory(prefix="enactor-ab-") as tmp:
        baseline = Path(tmp)
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "ours": []}
        for i in range(1, count + 1):
            for side, checkout in (("baseline", baseline), ("ours", REPO)):
                out = out_dir.resolve() / f"{side}-{i}.json"
                runs[side].append(_run(checkout, endpoints, out))
                print(f"{side} run {i}: {runs[side][-1]['enactor']['cluster_config_walls_s']}",
                      flush=True)
    return runs


if __name__ == "__main__":
    sys.exit(main())
