"""CPU per query of the cheapest Python responder beside ours, NSD and Knot: the Python floor.

Issue 16 asks ours to use at most 1.1x NSD's CPU per query at 25,000 q/s. This bench asks
what a Python server can reach at all: ``bench.floor_server`` answers the same zone with
nothing but a dict lookup per query (no zone to follow, no metrics), once on a uvloop loop as
ours takes datagrams that come one at a time, once in a blocking loop of its own. Every round
runs every server at each fixed rate, one after the other (interleaved); the figures are
medians over rounds, and each server's CPU comes from ``/proc`` (every thread and child).

    .venv/bin/python -m bench.dns_floor [--rounds 3] [--duration 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench import dnsperf, servers, zonedata
from bench.common import BenchError, run_in_tempdir
from bench.dns_bench import WARM_UP_S, summarize
from bench.dnsperf import DnsperfResult
from bench.servers import DnsChild

FLOORS = ("uvloop", "blocking")
REFERENCES = ("nsd", "knot")


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Median CPU per query of each server over NSD's, and ours over the uvloop floor's (the
    share of ours that is our own code, not Python's)."""
    def cpu(name: str) -> float | None:
        row = summary.get(name)
        return row["cpu_per_query_us_median"] if row else None

    def over(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    out = {f"{name}_over_nsd": over(cpu(name), cpu("nsd"))
           for name in summary if name != "nsd"}
    out["ours_over_floor-uvloop"] = over(cpu("ours"), cpu("floor-uvloop"))
    return out


async def measure(root: Path, rates: tuple[float, ...], rounds: int, duration_s: float,
                  endpoints: int, clients: int) -> dict[str, Any]:
    async with zonedata.store(root, endpoints, appendonly=True) as s:
        await zonedata.populate(s, plans=2)
        zone = await zonedata.export(s, root / "zone")
        running: list[DnsChild] = []
        results: dict[str, dict[str, list[DnsperfResult]]] = {f"{r:g}": {} for r in rates}
        skipped: dict[str, str] = {}
        try:
            running.append(servers.start_ours(root, s.url))
            running += [servers.start_floor(root, zone, mode) for mode in FLOORS]
            starters = {"nsd": servers.start_nsd, "knot": servers.start_knot}
            for name in REFERENCES:
                try:
                    running.append(starters[name](root, zone))
                except BenchError as e:
                    skipped[name] = str(e)
            for server in running:  # as bench.dns_bench: replies prepared, caches warm
                dnsperf.run(f"{server.name} warm-up", server.port, zone.query_file,
                            WARM_UP_S, clients=clients)
            for n in range(rounds):
                for rate in rates:
                    for server in running:
                        run = dnsperf.run(server.name, server.port, zone.query_file, duration_s,
                                          rate=rate, clients=clients, server_tree=server.pid)
                        results[f"{rate:g}"].setdefault(server.name, []).append(run)
                        print(f"round {n + 1}/{rounds} {rate:>6g} q/s {server.name:<15} "
                              f"{run.cpu_per_query_us} us/query (user {run.user_per_query_us}, "
                              f"system {run.system_per_query_us}), lost {run.lost}",
                              file=sys.stderr, flush=True)
        finally:
            for server in running:
                server.stop()
    by_rate = {}
    for key, by_server in results.items():
        summary = {name: summarize(runs) for name, runs in by_server.items()}
        by_rate[key] = {"ratios": ratios(summary), "servers": summary}
    return {"endpoints": endpoints, "rounds": rounds, "duration_s": duration_s,
            "clients": clients, "skipped": skipped, "rates": by_rate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", default="25000,5000",
                        help="fixed query rates, comma-separated (default 25000,5000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per dnsperf run")
    parser.add_argument("--endpoints", type=int, default=1003)
    parser.add_argument("--clients", type=int, default=4, help="dnsperf client sockets")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        rates = tuple(float(r) for r in args.rates.split(","))
    except ValueError:
        parser.error(f"--rates {args.rates!r}: give numbers separated by commas, e.g. 25000,5000")
    if not rates or any(r <= 0 for r in rates):
        parser.error("--rates must all be above 0")
    if args.rounds < 1 or args.duration <= 0 or args.clients < 1:
        parser.error("--rounds and --clients must be at least 1, --duration above 0")
    if args.endpoints < 4:
        parser.error("--endpoints must be at least 4 (the named endpoints and one cell)")
    try:
        return run_in_tempdir(
            "dns_floor", lambda root: measure(root, rates, args.rounds, args.duration,
                                              args.endpoints, args.clients), argv, args.out)
    except BenchError as e:
        print(f"dns_floor: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
