"""A large zone: 100,000+ record sets loaded by our DNS server, its load time and memory, and
its CPU per query beside a small zone's (:mod:`bench.zone_cpu`: same queries, interleaved)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import dnsperf, servers, zone_cpu, zonedata
from bench.common import BenchError, load_average, proc_status
from bench.servers import DnsChild
from bench.zone_cpu import MISS_CACHE_ENTRIES, SMALL_ENDPOINTS, Log, Pair


def _quiet(text: str) -> None:
    del text


async def run(root: Path, endpoints: int = 25_000, query_s: float = 5.0, *, rounds: int = 3,
              small_endpoints: int = SMALL_ENDPOINTS, log: Log = _quiet) -> dict[str, Any]:
    """Bulk-load ``endpoints`` endpoints (5 record sets each), start our server, measure; and
    compare its CPU per query with a zone of ``small_endpoints``, in ``rounds`` rounds."""
    if not 4 <= small_endpoints <= endpoints:
        raise BenchError(f"the small zone's {small_endpoints} endpoints must be from 4 to the "
                         f"large zone's {endpoints}")
    if rounds < 1:
        raise BenchError(f"{rounds} rounds: at least one")
    out: dict[str, Any] = {"loadavg_at_start": load_average()}
    async with zonedata.store(root, endpoints, appendonly=False) as s, \
            zonedata.store(root, small_endpoints, appendonly=False) as small_store:
        started = time.perf_counter()
        written = await zonedata.bulk_load(s)
        load_s = time.perf_counter() - started
        zone = await zonedata.export(s, root / "zone-large")
        redis_info = await s.client.info("memory")
        await zonedata.bulk_load(small_store)
        small = await zonedata.export(small_store, root / "zone-small")
        zone_cpu.check_shared(zone_cpu.answers(small), zone_cpu.answers(zone))
        running: list[DnsChild] = []
        try:
            started = time.perf_counter()
            ours = servers.start_ours(root, s.url, timeout_s=120, name="ours-large")
            running.append(ours)
            ready_s = time.perf_counter() - started
            loaded = proc_status(ours.pid)
            log(f"  first answer after {ready_s:.1f} s, RSS {loaded['VmRSS'] / 1024:.0f} MiB")
            running.append(servers.start_ours(root, small_store.url, name="ours-small"))
            running.append(servers.start_ours(root, s.url, timeout_s=120, name="ours-large-miss",
                                              cache_entries=MISS_CACHE_ENTRIES))
            running.append(servers.start_ours(root, small_store.url, name="ours-small-miss",
                                              cache_entries=MISS_CACHE_ENTRIES))
            pairs = (Pair("hit", running[0], running[1]), Pair("miss", running[2], running[3]))
            out["cpu_large_vs_small"] = zone_cpu.interleave(pairs, small.query_file, rounds,
                                                            query_s, log)
            ours.child.check_alive()
            run = dnsperf.run(ours.name, ours.port, zone.query_file, query_s,
                              clients=zone_cpu.CLIENTS, server_tree=ours.pid)
            after = proc_status(ours.pid)
            small_rss = proc_status(running[1].pid)
        finally:
            for server in running:
                server.stop()
    return {
        **out,
        "endpoints": endpoints, "record_sets": written + 3, "a_records_served": zone.records,
        "cpu_per_query_us": run.cpu_per_query_us,
        "bulk_load_s": round(load_s, 2), "server_start_to_first_answer_s": round(ready_s, 2),
        "rss_after_load_mib": round(loaded["VmRSS"] / 1024, 1),
        "rss_after_queries_mib": round(after["VmRSS"] / 1024, 1),
        "peak_rss_mib": round(after["VmHWM"] / 1024, 1),
        "redis_used_memory_mib": round(int(redis_info["used_memory"]) / 2**20, 1),
        "dnsperf_all_names": run.to_dict(),
        "small_zone": {"endpoints": small_endpoints, "a_records_served": small.records,
                       "query_file_names": len(small.names), "rss_mib": round(
                           small_rss["VmRSS"] / 1024, 1)},
        "loadavg_at_end": load_average(),
    }
