"""Our DNS server against NSD, Knot and dnslib's built-in server: same zone, same queries.

Every round runs every server once, one after the other (interleaved), so a busy moment on
the shared machine hits all of them alike; the figures are medians over rounds.  Zone churn
comes from a real planner/enactor pair, paused (SIGSTOP) during the static runs and resumed
(SIGCONT) for the runs under churn, so those interleave too. Under churn NSD and Knot run
too, at the fixed rate: they serve a static zone, so what the churn does to their latency is
the machine's share (the churn's processes take CPUs from every server and from dnsperf).
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import dnsperf, propagation, servers, zonedata
from bench.churn import Churn
from bench.common import BenchError, proc_status
from bench.dnsperf import DnsperfResult
from bench.servers import DnsChild

Log = Callable[[str], None]


def _median(results: list[DnsperfResult], field: str) -> float | None:
    values = [getattr(r, field) for r in results if getattr(r, field) is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(results: list[DnsperfResult]) -> dict[str, Any]:
    return {
        "runs": len(results),
        "qps_median": _median(results, "qps"),
        "qps_runs": [r.qps for r in results],
        "avg_latency_ms_median": _median(results, "avg_latency_ms"),
        "p50_ms_median": _median(results, "p50_ms"),
        "p99_ms_median": _median(results, "p99_ms"),
        "p99_ms_runs": [r.p99_ms for r in results],
        "p999_ms_median": _median(results, "p999_ms"),
        "server_cpu_s_median": _median(results, "server_cpu_s"),
        "server_wait_s_median": _median(results, "server_wait_s"),
        "server_total_cpu_s_median": _median(results, "server_total_cpu_s"),
        "cpu_per_query_us_median": _median(results, "cpu_per_query_us"),
        "cpu_per_query_us_runs": [r.cpu_per_query_us for r in results],
        "user_per_query_us_median": _median(results, "user_per_query_us"),
        "system_per_query_us_median": _median(results, "system_per_query_us"),
        "loadavg_1m_runs": [r.loadavg_1m for r in results],
        "lost_total": sum(r.lost for r in results),
        "sent_total": sum(r.sent for r in results),
        "response_bytes": results[0].response_bytes if results else None,
        "command": results[0].command if results else "",
    }


BASELINE = "ours-baseline"
"""Our server from another checkout (``--baseline DIR``, e.g. main), interleaved with ours:
before and after measured in the same rounds, under the same load."""
PYTHON_PATH = "ours-python"
"""Our server with DNSRACE_DNS_FAST_PATH=0 (every query answered by the Python engine, UDP in
batches from the event loop, as before the compiled fast path): what the fast path buys,
measured beside it."""
WARM_UP_S = 1.0
"""Seconds of the query file each server answers before the rounds (at most half a run's
duration): ours prepares a reply per distinct query on its first sight (NSD and Knot compile
theirs from the zone file)."""


def _rate_key(fixed: float, rate: float) -> str:
    """``rate`` for the main fixed rate (its key since issue 6), ``rate5000`` for another."""
    return "rate" if fixed == rate else f"rate{fixed:g}"


def _main_thread_serves(server: DnsChild) -> int | None:
    """Our server's main thread: its schedstat is the Python share (the event loop: zone sync,
    misses, /metrics; all of the answering with the fast path off). NSD serves from a child
    process, Knot and dnslib from other threads: not measured. CPU per query is every
    thread's and child's (``server_tree``)."""
    return server.pid if server.name.startswith("ours") else None


def _cpu_budget(before: dict[str, float], after: dict[str, float], run: DnsperfResult,
                duration_s: float) -> dict[str, float]:
    """CPUs in use (CPU seconds per second) by each process during a run under churn."""
    out = {name: round((after[name] - before[name]) / duration_s, 2) for name in after}
    out["dns server"] = round((run.server_cpu_s or 0.0) / duration_s, 2)
    out["dnsperf"] = round((run.client_cpu_s or 0.0) / duration_s, 2)
    out["total"] = round(sum(out.values()), 2)
    return out


def _pause(churn: Churn, paused: bool) -> None:
    for child in churn.children:
        child.check_alive()
        child.process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)  # type: ignore[union-attr]


async def run(root: Path, log: Log, endpoints: int = 1003, rounds: int = 3,
              duration_s: float = 10.0, rate: float = 25_000, references: tuple[str, ...] = (
                  "nsd", "knot"), propagation_samples: int = 300, clients: int = 4,
              low_rate: float = 5_000, baseline: Path | None = None) -> dict[str, Any]:
    """Every round: each server at max rate, then at ``low_rate`` and ``rate`` q/s, one after
    the other; then ours under churn. ``clients`` client sockets in every dnsperf run;
    ``baseline``: another checkout whose server runs beside ours in every round."""
    rates = (low_rate, rate) if low_rate else (rate,)
    out: dict[str, Any] = {"endpoints": endpoints, "rounds": rounds, "duration_s": duration_s,
                           "rate_qps": rate, "low_rate_qps": low_rate, "clients": clients,
                           "baseline": str(baseline) if baseline else None}
    async with zonedata.store(root, endpoints, appendonly=True) as s:
        started = time.perf_counter()
        await zonedata.populate(s, plans=2)
        out["zone_populate_s"] = round(time.perf_counter() - started, 2)
        zone = await zonedata.export(s, root / "zone")
        out["zone"] = {"endpoints": len(zone.names), "a_records": zone.records,
                       "query_file_names": len(zone.names)}
        running: list[DnsChild] = []
        try:
            running.append(servers.start_ours(root, s.url))
            if baseline is not None:
                running.append(servers.start_ours(root, s.url, name=BASELINE, code=baseline))
            running.append(servers.start_ours(root, s.url, fast_path=False, name=PYTHON_PATH))
            starters = {"nsd": servers.start_nsd, "knot": servers.start_knot}
            for name in references:
                try:
                    running.append(starters[name](root, zone))
                except BenchError as e:
                    log(f"  {name} skipped: {e}")
            running.append(servers.start_dnslib(root, zone))
            ours = running[0]
            results: dict[str, list[DnsperfResult]] = {}

            def record(key: str, result: DnsperfResult) -> None:
                results.setdefault(key, []).append(result)
                extra = f" p99 {result.p99_ms} ms" if result.p99_ms is not None else ""
                if result.server_cpu_s is not None:
                    extra += (f"  server CPU {result.server_cpu_s} s, waited for a CPU "
                              f"{result.server_wait_s} s")
                log(f"  {key:<24} {result.qps:>10.0f} q/s  avg {result.avg_latency_ms:.3f} ms"
                    f"{extra}  lost {result.lost}")

            with Churn(s.url, endpoints - 3, root) as churn:
                churn.wait_churning()
                churn_rates = []
                churn_cpu: list[dict[str, float]] = []
                compared = [srv for srv in running if srv.name != "dnslib"]
                controls = [srv for srv in compared if srv.name in ("nsd", "knot")]
                """NSD and Knot under the same churn: they serve a static zone, so the churn
                only takes the machine's CPUs from them (and from dnsperf): what the machine
                does to any server's latency, beside what following the zone costs ours."""
                for server in running:
                    dnsperf.run(f"{server.name} warm-up", server.port, zone.query_file,
                                min(WARM_UP_S, duration_s / 2),
                                clients=clients)
                for n in range(rounds):
                    log(f" round {n + 1}/{rounds}")
                    _pause(churn, True)
                    for server in running:  # interleaved: ours, ours unbatched, NSD, Knot...
                        record(f"max/{server.name}", dnsperf.run(
                            server.name, server.port, zone.query_file, duration_s,
                            clients=clients, server_pid=_main_thread_serves(server),
                            server_tree=server.pid))
                    for fixed in rates:
                        for server in compared:  # dnslib cannot answer these rates (see max)
                            record(f"{_rate_key(fixed, rate)}/{server.name}", dnsperf.run(
                                server.name, server.port, zone.query_file, duration_s,
                                rate=fixed, clients=clients,
                                server_pid=_main_thread_serves(server),
                                server_tree=server.pid))
                    _pause(churn, False)
                    churn.wait_churning(batches=20)
                    record("max/ours+churn", dnsperf.run(
                        "ours+churn", ours.port, zone.query_file, duration_s, clients=clients,
                        server_pid=ours.pid, server_tree=ours.pid))
                    before = churn.cpu_seconds()
                    record("rate/ours+churn", dnsperf.run(
                        "ours+churn", ours.port, zone.query_file, duration_s, rate=rate,
                        clients=clients, server_pid=ours.pid, server_tree=ours.pid))
                    churn_cpu.append(_cpu_budget(before, churn.cpu_seconds(),
                                                 results["rate/ours+churn"][-1], duration_s))
                    log(f"  CPUs busy during it: {churn_cpu[-1]}")
                    churn_rates.append(churn.rate())
                    for server in controls:  # a static zone, the same churn
                        record(f"rate/{server.name}+churn", dnsperf.run(
                            f"{server.name}+churn", server.port, zone.query_file, duration_s,
                            rate=rate, clients=clients, server_tree=server.pid))
                out["churn"] = churn_rates
                out["churn_cpu_per_s"] = churn_cpu
                prop_zone = s.zone()
                log(" propagation under churn")
                out["propagation_churn"] = await propagation.measure(
                    prop_zone, ours.port, propagation_samples, ours.metrics_port, first=1)
                _pause(churn, True)
                log(" propagation idle")
                out["propagation_idle"] = await propagation.measure(
                    prop_zone, ours.port, propagation_samples, ours.metrics_port,
                    first=propagation_samples + 1)
                log(" propagation idle, Redis without fsync (the software's share)")
                await prop_zone.client.config_set("appendfsync", "no")
                try:
                    out["propagation_idle_nofsync"] = await propagation.measure(
                        prop_zone, ours.port, propagation_samples, ours.metrics_port,
                        first=3 * propagation_samples + 1)
                finally:
                    await prop_zone.client.config_set("appendfsync", "always")
                log(f" propagation at {rate:g} q/s")
                load = dnsperf.start_background(ours.port, zone.query_file,
                                                duration_s * 3, rate)
                try:
                    await asyncio.sleep(0.5)
                    out["propagation_loaded"] = await propagation.measure(
                        prop_zone, ours.port, propagation_samples, ours.metrics_port,
                        first=2 * propagation_samples + 1)
                finally:
                    load.terminate()
                    load.communicate()
                _pause(churn, False)
            out["rss_mib"] = {srv.name: round(proc_status(srv.pid)["VmRSS"] / 1024, 1)
                              for srv in running}
        finally:
            for server in running:
                server.stop()
    out["results"] = {key: summarize(values) for key, values in results.items()}
    out["raw"] = {key: [r.to_dict() for r in values] for key, values in results.items()}
    return out
