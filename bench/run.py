"""Run every dnsrace benchmark in one sequence; print the figures and write them as JSON.

    .venv/bin/python -m bench.run                  # everything (about 10 minutes)
    .venv/bin/python -m bench.run --quick          # a small smoke run (about 1 minute)
    .venv/bin/python -m bench.run --only dns,enactor --out /tmp/bench.json

``main`` is the function to wire as ``dnsrace bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import dns_bench, enactor_bench, loadgen_bench, memory_bench, zone_cpu
from bench.common import REPO, LoadSampler, machine

SECTIONS = ("dns", "enactor", "memory", "loadgen")
PROPAGATION_RUNS = ("propagation_idle", "propagation_idle_nofsync", "propagation_loaded",
                    "propagation_churn")
DEFAULT_OUT = REPO / "bench" / "results" / "latest.json"


def log(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 6: the figure, the bound, met or not, and by how much."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, bound: float, higher_is_better: bool,
            unit: str) -> None:
        if value is None:
            rows.append({"target": name, "value": None, "bound": bound, "met": None})
            return
        met = value >= bound if higher_is_better else value <= bound
        margin = value / bound if higher_is_better else bound / value if value else None
        rows.append({"target": name, "value": value, "bound": bound, "unit": unit, "met": met,
                     "factor": round(margin, 3) if margin is not None else None})

    dns = result.get("dns")
    if dns:
        r = dns["results"]
        ours = r["max/ours"]["qps_median"]
        add("DNS q/s vs NSD (>= 0.9)", _ratio(ours, r.get("max/nsd", {}).get("qps_median")),
            0.9, True, "x")
        add("DNS q/s vs dnslib (>= 20)",
            _ratio(ours, r.get("max/dnslib", {}).get("qps_median")), 20, True, "x")
        lost = sum(r[k]["lost_total"] for k in r if k.split("/")[1].startswith("ours"))
        rows.append({"target": "0 lost queries (ours, every run)", "value": lost, "bound": 0,
                     "unit": "queries", "met": lost == 0})
        for key in ("max", *(k for k in ("rate5000", "rate") if f"{k}/ours" in r)):
            ratio = _ratio(r[f"{key}/ours"].get("cpu_per_query_us_median"),
                           r.get(f"{key}/nsd", {}).get("cpu_per_query_us_median"))
            add(f"DNS CPU per query vs NSD, {key} (<= 1.1)", ratio, 1.1, False, "x")
        add(f"p99 at {dns['rate_qps']:g} q/s <= 1 ms", r["rate/ours"]["p99_ms_median"], 1.0,
            False, "ms")
        add("p99 at rate under churn <= 2 ms", r["rate/ours+churn"]["p99_ms_median"], 2.0,
            False, "ms")
        control = r.get("rate/nsd+churn", {}).get("p99_ms_median")
        if control is not None:  # a reading, not a target: the machine's share of that p99
            rows.append({"target": "p99 at rate under churn, NSD under the same churn "
                         "(static zone; for reading the row above)", "value": control,
                         "bound": None, "unit": "ms", "met": None})
        add("q/s achieved at rate under churn (>= 0.99 of the rate)",
            _ratio(r["rate/ours+churn"]["qps_median"], dns["rate_qps"]), 0.99, True, "x")
        for key in PROPAGATION_RUNS:
            add(f"{key.replace('_', ' ')} p99 <= 5 ms (from commit)",
                dns[key]["from_commit"]["p99_ms"], 5.0, False, "ms")
    enactor = result.get("enactor")
    if enactor:
        bound = 10.0 if enactor["endpoints"] >= 100_000 else 2.0
        add(f"{enactor['endpoints']}-endpoint plan <= {bound:g} s (cluster Redis config)",
            enactor["cluster_config"]["wall_s"], bound, False, "s")
    memory = result.get("memory")
    if memory:
        add(f"zone of {memory['record_sets']} record sets: start to first answer <= 20 s",
            memory["server_start_to_first_answer_s"], 20.0, False, "s")
        add(f"zone of {memory['record_sets']} record sets: peak RSS <= 1024 MiB",
            memory["peak_rss_mib"], 1024.0, False, "MiB")
        for path, c in memory.get("cpu_large_vs_small", {}).items():
            add(f"zone of {memory['record_sets']} record sets: CPU per query ({path}) vs "
                f"{memory['small_zone']['endpoints']} endpoints, same queries (<= 1.1)",
                c["ratio_of_medians"], 1.1, False, "x")
    loadgen = result.get("loadgen")
    if loadgen:
        add("loadgen >= 99% of 2000 req/s", loadgen["at_2000"]["achieved_pct_of_target"],
            99.0, True, "%")
    return rows


def table(result: dict[str, Any]) -> str:
    lines = []
    dns = result.get("dns")
    if dns:
        lines.append(f"DNS ({dns['zone']['endpoints']} endpoints, {dns['rounds']} rounds of "
                     f"{dns['duration_s']:g} s, medians)")
        lines.append(f"  {'run':<24} {'q/s':>10} {'avg ms':>8} {'p50 ms':>8} {'p99 ms':>8} "
                     f"{'p99.9':>8} {'lost':>6} {'us CPU/q':>9} {'user':>8} {'system':>8}")
        for key, row in dns["results"].items():
            lines.append(
                f"  {key:<24} {row['qps_median']:>10.0f} {row['avg_latency_ms_median']:>8.3f} "
                f"{_fmt(row['p50_ms_median'])} {_fmt(row['p99_ms_median'])} "
                f"{_fmt(row['p999_ms_median'])} {row['lost_total']:>6} "
                f"{_fmt(row.get('cpu_per_query_us_median'))} "
                f"{_fmt(row.get('user_per_query_us_median'))} "
                f"{_fmt(row.get('system_per_query_us_median'))}")
        for key in PROPAGATION_RUNS:
            p = dns[key]
            lines.append(f"  {key:<26} from commit p50 {p['from_commit']['p50_ms']} ms "
                         f"p99 {p['from_commit']['p99_ms']} ms; p99 from apply call "
                         f"{p['from_apply_call']['p99_ms']} ms, from its return "
                         f"{p['from_apply_return']['p99_ms']} ms; fsync >= 1 ms in "
                         f"{p['redis_fsync']['seconds_with_fsync_over_1ms']} s, worst "
                         f"{p['redis_fsync']['worst_ms']} ms")
        lines.append(f"  churn: {dns['churn']}")
    enactor = result.get("enactor")
    if enactor:
        for key in ("cluster_config", "cluster_config_with_cleanup", "no_persistence"):
            e = enactor[key]
            lines.append(f"enactor {e['endpoints']} endpoints, window {e['window']} ({key}): "
                         f"{e['wall_s']} s wall, client CPU {e['client_cpu_s']} s, Redis busy "
                         f"{e['redis_busy_s']} s, {e['deleted']} trees deleted, "
                         f"{e['commands_sent_per_endpoint']} commands/endpoint")
        sweep = enactor.get("window_sweep_cluster_config", {})
        lines.append("enactor window sweep (cluster_config): " + ", ".join(
            f"{w}: {r['wall_s']} s" for w, r in sweep.items()))
    memory = result.get("memory")
    if memory:
        lines.append(f"zone of {memory['record_sets']} record sets: first answer after "
                     f"{memory['server_start_to_first_answer_s']} s, RSS "
                     f"{memory['rss_after_load_mib']} MiB loaded, "
                     f"{memory['rss_after_queries_mib']} MiB after queries; all-names file "
                     f"(misses): {memory['cpu_per_query_us']} us CPU/query")
        for path, c in memory.get("cpu_large_vs_small", {}).items():
            lines.append(f"  CPU per query, reply cache {path}, large vs "
                         f"{memory['small_zone']['endpoints']} endpoints: "
                         f"{c['large_cpu_per_query_us_median']} vs "
                         f"{c['small_cpu_per_query_us_median']} us (medians; ratio "
                         f"{c['ratio_of_medians']}, by round {c['ratio_runs']})")
    loadgen = result.get("loadgen")
    if loadgen:
        a = loadgen["at_2000"]
        lines.append(f"loadgen at 2000/s: achieved {a['achieved_rate']}/s "
                     f"({a['achieved_pct_of_target']} %), late {a['late']}, "
                     f"dropped {a['dropped']}, ok {a['ok_pct']} %")
        lines.append(f"loadgen one core: max sustained "
                     f"{loadgen.get('one_core_max_sustained_rate')} req/s")
    lines.append("targets")
    for row in result.get("targets", []):
        verdict = {True: "met", False: "MISSED", None: "n/a"}[row["met"]]
        lines.append(f"  {verdict:<7} {row['target']}: {row['value']} "
                     f"{row.get('unit', '')} (bound {row['bound']})")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return f"{value:>8.3f}" if value is not None else f"{'-':>8}"


async def _run_async(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if "dns" in args.only:
        log("== DNS: ours vs NSD, Knot, dnslib; churn; propagation")
        result["dns"] = await dns_bench.run(
            root / "dns", log, endpoints=args.endpoints, rounds=args.rounds,
            duration_s=args.duration, rate=args.rate,
            propagation_samples=args.propagation_samples, clients=args.clients,
            low_rate=args.low_rate, baseline=args.baseline)
    if "enactor" in args.only:
        log(f"== enactor: one plan over {args.enactor_endpoints} endpoints")
        result["enactor"] = await enactor_bench.run(root / "enactor", args.enactor_endpoints,
                                                    sweep=args.enactor_sweep)
    if "memory" in args.only:
        log(f"== memory: a zone of {args.memory_endpoints} endpoints")
        result["memory"] = await memory_bench.run(
            root / "memory", args.memory_endpoints, query_s=min(5.0, args.duration),
            rounds=args.rounds, small_endpoints=args.memory_small_endpoints, log=log)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small and short: checks that every benchmark still runs")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    parser.add_argument("--rate", type=float, default=25_000, help="fixed dnsperf rate, q/s")
    parser.add_argument("--low-rate", type=float, default=5_000,
                        help="a second fixed dnsperf rate, q/s (0: none)")
    parser.add_argument("--baseline", type=Path,
                        help="a checkout (e.g. of main) whose DNS server runs beside ours in "
                             "every round, as ours-baseline")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf client sockets (-c)")
    parser.add_argument("--endpoints", type=int, default=1003, help="endpoints in the DNS zone")
    parser.add_argument("--enactor-endpoints", type=int, default=10_000)
    parser.add_argument("--enactor-sweep", default=",".join(map(str, enactor_bench.SWEEP)),
                        help="enactor windows tried one round each (comma-separated; '' none)")
    parser.add_argument("--memory-endpoints", type=int, default=25_000)
    parser.add_argument("--memory-small-endpoints", type=int,
                        default=zone_cpu.SMALL_ENDPOINTS,
                        help="endpoints of the small zone whose CPU per query the large "
                             "zone's is compared with (--rounds rounds)")
    parser.add_argument("--propagation-samples", type=int, default=300)
    parser.add_argument("--loadgen-duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    args.only = tuple(part.strip() for part in args.only.split(",") if part.strip())
    try:
        args.enactor_sweep = tuple(int(w) for w in args.enactor_sweep.split(",") if w.strip())
    except ValueError:
        parser.error(f"--enactor-sweep {args.enactor_sweep!r}: comma-separated window sizes")
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}")
    if args.quick:
        args.rounds, args.duration, args.rate, args.low_rate = 1, 1.0, 5000, 0
        args.endpoints, args.enactor_endpoints, args.memory_endpoints = 53, 200, 500
        args.memory_small_endpoints = min(args.memory_small_endpoints, 53)
        args.propagation_samples, args.loadgen_duration = 20, 1.0
    if "memory" in args.only and not 4 <= args.memory_small_endpoints <= args.memory_endpoints:
        parser.error(f"--memory-small-endpoints {args.memory_small_endpoints}: from 4 (the "
                     f"named endpoints and a cell) to --memory-endpoints "
                     f"({args.memory_endpoints})")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    result: dict[str, Any] = {"machine": machine(), "quick": args.quick,
                              "argv": list(argv if argv is not None else sys.argv[1:])}
    log(f"machine: {result['machine']}")
    with tempfile.TemporaryDirectory(prefix="dnsrace-bench-") as tmp, LoadSampler() as load:
        root = Path(tmp)
        result.update(asyncio.run(_run_async(args, root)))
        if "loadgen" in args.only:
            log("== load generator")
            result["loadgen"] = loadgen_bench.run(
                root / "loadgen", duration_s=args.loadgen_duration,
                step_s=min(5.0, args.loadgen_duration),
                rates=(2000, 2500) if args.quick else (2000, 3000, 4000, 5000, 6000, 8000))
    result["machine_load_during_run"] = load.summary()
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["targets"] = targets(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    log(table(result))
    log(f"machine load during the run: {result['machine_load_during_run']}")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
