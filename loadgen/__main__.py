"""``python -m loadgen``: one load generator process (settings from ``DNSRACE_*``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadgen.client import validate_names
from loadgen.service import ProcessOptions, run_process
from services.config import load
from services.core.names import REGIONAL
from services.runtime.service import ServiceContext, run_service


def parse_args(argv: Sequence[str] | None = None) -> ProcessOptions:
    parser = argparse.ArgumentParser(
        prog="python -m loadgen",
        description="Resolve DynamoDB's regional name through the dnsrace DNS server and call "
                    "the load balancer it names, at a constant rate (open model).",
    )
    parser.add_argument("--name", action="append", dest="names", metavar="NAME",
                        help=f"name to resolve (repeatable; default {REGIONAL})")
    parser.add_argument("--rate", type=float, help="requests per second (DNSRACE_LOAD_RATE)")
    parser.add_argument("--duration", type=float, dest="duration_s",
                        help="seconds to run, 0 until interrupted (DNSRACE_LOAD_DURATION_S)")
    parser.add_argument("--ramp", type=float, dest="ramp_s",
                        help="seconds to ramp up to the rate (DNSRACE_LOAD_RAMP_S)")
    parser.add_argument("--max-in-flight", type=int,
                        help="requests in flight at most (DNSRACE_LOAD_MAX_IN_FLIGHT)")
    parser.add_argument("--max-requests", type=int, help="stop after this many arrivals")
    parser.add_argument("--operation", choices=("get", "mixed"), default="get",
                        help="get: GetItem only; mixed: PutItem and GetItem alternate")
    parser.add_argument("--dns-timeout", type=float, default=1.0, dest="dns_timeout_s")
    parser.add_argument("--request-timeout", type=float, default=2.0, dest="request_timeout_s")
    parser.add_argument("--metrics-port", type=int,
                        help="first port to try for /metrics (default from the settings; 0: off)")
    parser.add_argument("--launch-rate", type=float,
                        help="instance launches per second to ec2_api (DNSRACE_EC2_LAUNCH_RATE; "
                             "0: none)")
    parser.add_argument("--clients", type=int,
                        help="virtual clients, each with its own cache, address choice and "
                             "retries (DNSRACE_LOAD_CLIENTS; 0: one shared stub cache)")
    parser.add_argument("--other-share", type=float,
                        help="share of requests (0 to 1) sent to the FIPS endpoint and the "
                             "account cells in turn (DNSRACE_LOAD_OTHER_SHARE)")
    parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--json", action="store_true", dest="as_json",
                        help="print the summary as JSON instead of text")
    args = vars(parser.parse_args(argv))
    args["names"] = tuple(args["names"] or (REGIONAL,))
    if (problem := _problem(args)) is not None:
        parser.error(problem)
    return ProcessOptions(**args)


def _problem(args: dict[str, Any]) -> str | None:
    """What is wrong with the options (said before anything starts), or None."""
    for key, flag in (("rate", "--rate"), ("duration_s", "--duration"), ("ramp_s", "--ramp"),
                      ("launch_rate", "--launch-rate")):
        if args[key] is not None and not args[key] >= 0:
            return f"{flag} must be >= 0, got {args[key]:g}"
    if args["max_in_flight"] is not None and args["max_in_flight"] < 1:
        return f"--max-in-flight must be >= 1, got {args['max_in_flight']}"
    if args["clients"] is not None and not 0 <= args["clients"] <= 100_000:
        return f"--clients must be between 0 and 100000, got {args['clients']}"
    if args["other_share"] is not None and not 0 <= args["other_share"] <= 1:
        return f"--other-share must be from 0 to 1, got {args['other_share']:g}"
    try:
        validate_names(args["names"])
    except ValueError as e:
        return f"--name: {e}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    settings = load()

    async def run(ctx: ServiceContext) -> None:
        await run_process(ctx, options)

    return run_service(run, settings, "loadgen")


if __name__ == "__main__":
    raise SystemExit(main())
