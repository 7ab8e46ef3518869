"""Our server's CPU per query on a large zone against a small one: same queries, interleaved.

Issue 16 asks that a zone of 1,000,000 record sets be served with "the same CPU per query".
Each zone is served by its own copy of our server, from its own Redis, on this machine at the
same time, and every round runs dnsperf (max rate, the same clients) against the large zone
and the small one, one right after the other, so a busy moment of the shared machine falls on
both alike; the order alternates (large first in odd rounds, small first in even ones), so
neither side always has the later moment.

**The query file** is the small zone's own (:func:`bench.zonedata.export`): each of its 1,003
endpoints once, with the regional name every fourth query -- the DNS bench's usual cluster
mix, so the small side is the bench's familiar figure. Every one of those names exists in the
large zone too (cell ``i`` has the same name in both) with the same addresses (both zones are
made from the same plans; :func:`check_shared` checks it), so both servers are asked the same
distinct names and give the same replies. 1,003 distinct names stay far below the reply
cache's 50,000 entries: after a warm-up run, the cache answers every query on both sides, and
what differs is the size of the zone behind the cache and nothing else.

**The cache-miss path**: asking the large zone's names once each (the all-names run, kept beside)
is no comparison, as the small zone has no such names. Instead a second pair of servers runs
with ``DNSRACE_DNS_CACHE_ENTRIES=1``: each new reply starts the cache afresh, so every query
of the same file is parsed, resolved in the zone and encoded anew, on both zones.

A figure is ``cpu_per_query_us``: the CPU of the server's process tree (every thread, from
``/proc``) during the run, per completed query. Reported per round, with the ratio
large / small per round and of the medians. Beside it, each run's mean UDP batch (queries per
receive call, from the server's /metrics): at max rate the system calls are much of a cached
answer's CPU, so a side that happened to get bigger batches answers for less per query.
"""

from __future__ import annotations

import json
import statistics
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import dnsperf
from bench.common import BenchError
from bench.dnsperf import DnsperfResult
from bench.servers import DnsChild
from bench.zonedata import ExportedZone

SMALL_ENDPOINTS = 1003
"""The small zone: the DNS bench's (the named three and 1,000 cells)."""
MISS_CACHE_ENTRIES = 1
"""DNSRACE_DNS_CACHE_ENTRIES of the cache-miss pair: every new reply clears the cache."""
WARMUP_S = 1.0
CLIENTS = 4
BATCHES = "dnsrace_dns_udp_batches_total"
DATAGRAMS = "dnsrace_dns_udp_batched_datagrams_total"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Pair:
    """Two servers of ours, one on each zone, compared under one path (``hit`` or ``miss``)."""

    path: str
    large: DnsChild
    small: DnsChild


@dataclass(frozen=True)
class Measured:
    """One dnsperf run against one server, and the mean UDP batch the server took meanwhile."""

    result: DnsperfResult
    mean_udp_batch: float | None


def counters(metrics_text: str) -> dict[str, float]:
    """The UDP batch counters in a /metrics page (Prometheus text format)."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name in (BATCHES, DATAGRAMS):
            out[name] = float(value)
    return out


def mean_batch(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """Datagrams per receive call between two readings; None without both counters."""
    if not {BATCHES, DATAGRAMS} <= before.keys() & after.keys():
        return None
    calls = after[BATCHES] - before[BATCHES]
    return round((after[DATAGRAMS] - before[DATAGRAMS]) / calls, 2) if calls > 0 else None


def _scrape(server: DnsChild) -> dict[str, float]:
    if server.metrics_port is None:
        return {}
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return counters(response.read().decode())


def check_shared(small: Mapping[str, Sequence[str]], large: Mapping[str, Sequence[str]]) -> None:
    """Raise unless every name of the small zone answers the same addresses in the large."""
    missing = [name for name in small if name not in large]
    differ = [name for name in small if name in large and sorted(small[name])
              != sorted(large[name])]
    if missing or differ:
        raise BenchError(f"the small zone's query names are not the large zone's: "
                         f"{len(missing)} missing (e.g. {missing[:3]}), {len(differ)} with "
                         f"other addresses (e.g. {differ[:3]})")


def answers(zone: ExportedZone) -> dict[str, list[str]]:
    loaded: dict[str, list[str]] = json.loads(zone.answers_json.read_text())["answers"]
    return loaded


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def compare(large_runs: Sequence[Measured], small_runs: Sequence[Measured]) -> dict[str, Any]:
    """Round by round CPU per query of the two sides, their medians and the ratios."""
    if not large_runs or len(large_runs) != len(small_runs):
        raise ValueError(f"{len(large_runs)} large and {len(small_runs)} small runs: one of "
                         "each a round")
    large = [m.result for m in large_runs]
    small = [m.result for m in small_runs]
    large_us = [r.cpu_per_query_us for r in large]
    small_us = [r.cpu_per_query_us for r in small]
    ratios = [_ratio(a, b) for a, b in zip(large_us, small_us, strict=True)]
    return {
        "rounds": len(large),
        "large_cpu_per_query_us_runs": large_us,
        "small_cpu_per_query_us_runs": small_us,
        "ratio_runs": ratios,
        "large_cpu_per_query_us_median": _median(large_us),
        "small_cpu_per_query_us_median": _median(small_us),
        "ratio_of_medians": _ratio(_median(large_us), _median(small_us)),
        "ratio_median": _median(ratios),
        "large_qps_runs": [r.qps for r in large],
        "small_qps_runs": [r.qps for r in small],
        "large_mean_udp_batch_runs": [m.mean_udp_batch for m in large_runs],
        "small_mean_udp_batch_runs": [m.mean_udp_batch for m in small_runs],
        "lost_total": sum(r.lost for r in (*large, *small)),
        "response_bytes": {"large": large[0].response_bytes, "small": small[0].response_bytes},
        "loadavg_1m_runs": [[a.loadavg_1m, b.loadavg_1m] for a, b in zip(large, small,
                                                                        strict=True)],
    }


def _measure(server: DnsChild, query_file: Path, duration_s: float) -> Measured:
    server.child.check_alive()
    before = _scrape(server)
    result = dnsperf.run(server.name, server.port, query_file, duration_s, clients=CLIENTS,
                         server_tree=server.pid)
    return Measured(result, mean_batch(before, _scrape(server)))


def order(round_index: int) -> tuple[str, str]:
    """The sides in round ``round_index`` (from 0): large first, then small first, and so on."""
    return ("large", "small") if round_index % 2 == 0 else ("small", "large")


def interleave(pairs: Sequence[Pair], query_file: Path, rounds: int, duration_s: float,
               log: Log) -> dict[str, Any]:
    """Warm every server up, then ``rounds`` rounds of both sides (:func:`order`) for each
    pair in turn."""
    for pair in pairs:
        for server in (pair.large, pair.small):
            _measure(server, query_file, WARMUP_S)
    runs: dict[str, dict[str, list[Measured]]] = {
        p.path: {"large": [], "small": []} for p in pairs}
    for n in range(rounds):
        for pair in pairs:
            for side in order(n):
                measured = _measure(pair.large if side == "large" else pair.small, query_file,
                                    duration_s)
                runs[pair.path][side].append(measured)
                r = measured.result
                log(f"  round {n + 1}/{rounds} {pair.path:<4} {side:<5} "
                    f"{r.cpu_per_query_us} us CPU/query, {r.qps:.0f} q/s, mean UDP batch "
                    f"{measured.mean_udp_batch}, lost {r.lost}, load {r.loadavg_1m}")
    return {path: {**compare(sides["large"], sides["small"]),
                   "order": [list(order(n)) for n in range(rounds)],
                   "raw": {side: [m.result.to_dict() for m in runs_of_side]
                           for side, runs_of_side in sides.items()}}
            for path, sides in runs.items()}
