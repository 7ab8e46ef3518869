"""``dnsrace cascade``'s arguments, apart from the command so that building the CLI's parser
imports nothing of the cascade (every process's /metrics would serve what it imports)."""

from __future__ import annotations

import argparse
from pathlib import Path

STAGE_NAMES = ("dwfm",)
"""The stages ``--stage`` takes (services.tools.cascade.STAGES has one runner for each)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stage",
        action="append",
        choices=STAGE_NAMES,
        required=True,
        help="the part of the cascade to run (dwfm)",
    )
    parser.add_argument("--mode", choices=("legacy", "safe"), default="legacy")
    parser.add_argument(
        "--collapse-watch",
        type=float,
        default=30.0,
        dest="collapse_watch_s",
        metavar="SECONDS",
        help="how long the operators watch for the leases to come back by themselves before "
        "they throttle and restart DWFM (default 30)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=Path("reports"),
        metavar="DIR",
        help="where the HTML report goes (default reports/)",
    )
