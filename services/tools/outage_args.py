"""``dnsrace outage``'s arguments and handler, apart from the command so that building the CLI's
parser imports nothing of the outage run (every process's /metrics would serve what it imports)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from services.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_outage(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools import ec2, outage

    try:
        return outage.outage_command(args, settings)
    except ec2.Ec2UsageError as e:
        print(f"dnsrace outage: {e}", file=sys.stderr)
        return 2


def register(add: Callable[[str, Handler, str], argparse.ArgumentParser]) -> None:
    parser = add("outage", cmd_outage, "the whole incident in one run: race, leases, DWFM, "
                 "Network Manager, NLB failover, recovery, beside AWS's timeline")
    parser.add_argument("--mode", choices=("legacy", "safe"), default="legacy")
    parser.add_argument("--collapse-watch", type=float, default=25.0, dest="collapse_watch_s",
                        metavar="SECONDS", help="how long the operators watch for the "
                        "leases to come back by themselves before they throttle and restart "
                        "DWFM, in any mode (default 25; a collapse counts from 20 s)")
    parser.add_argument("--failover-watch", type=float, default=2.0, dest="failover_watch_s",
                        metavar="SECONDS", help="legacy: how long failover keeps AZs out of "
                        "the NLB's name before the operators turn it off (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--report-dir", type=Path, default=Path("reports"), metavar="DIR",
                        help="where the HTML report goes (default reports/)")
