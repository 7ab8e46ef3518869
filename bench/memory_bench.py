"""A large zone: 100,000+ record sets loaded by our DNS server, its load time and memory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import dnsperf, servers, zonedata
from bench.common import proc_status


async def run(root: Path, endpoints: int = 25_000, query_s: float = 5.0) -> dict[str, Any]:
    """Bulk-load ``endpoints`` endpoints (5 record sets each), start our server, measure."""
    async with zonedata.store(root, endpoints, appendonly=False) as s:
        started = time.perf_counter()
        written = await zonedata.bulk_load(s)
        load_s = time.perf_counter() - started
        zone = await zonedata.export(s, root / "zone-large")
        redis_info = await s.client.info("memory")
        started = time.perf_counter()
        ours = servers.start_ours(root, s.url, timeout_s=120)
        try:
            ready_s = time.perf_counter() - started
            loaded = proc_status(ours.pid)
            run = dnsperf.run("ours", ours.port, zone.query_file, query_s, clients=4,
                              server_tree=ours.pid)
            after = proc_status(ours.pid)
        finally:
            ours.stop()
    return {
        "endpoints": endpoints, "record_sets": written + 3, "a_records_served": zone.records,
        "cpu_per_query_us": run.cpu_per_query_us,
        "bulk_load_s": round(load_s, 2), "server_start_to_first_answer_s": round(ready_s, 2),
        "rss_after_load_mib": round(loaded["VmRSS"] / 1024, 1),
        "rss_after_queries_mib": round(after["VmRSS"] / 1024, 1),
        "peak_rss_mib": round(after["VmHWM"] / 1024, 1),
        "redis_used_memory_mib": round(int(redis_info["used_memory"]) / 2**20, 1),
        "dnsperf_all_names": run.to_dict(),
    }
