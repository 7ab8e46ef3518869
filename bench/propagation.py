"""Propagation: from a committed change batch to the first DNS answer that reflects it.

Each sample commits one batch with ``ZoneStore.apply`` (a new tree and the alias flipped to
it, as an enactor does, on a probe endpoint no enactor touches), then asks the server over
UDP in a tight loop until the answer carries the new address.  Three clocks are reported:

- ``from_commit``: from the commit's own time (Redis ``TIME`` inside the change-batch script,
  the same machine clock; truncated to the millisecond, so up to 1 ms too long): the figure
  the target is about. The script only measures with ``TIME``; what it decides by (a lease)
  is the ``now_ms`` the store passes in, read before the batch is sent;
- ``from_apply_call``: from the ``apply`` call (adds the request's way to Redis);
- ``from_apply_return``: from the acknowledgement (the notification and the acknowledgement
  leave Redis together, after the append-only file's fsync).

The server's own ``dnsrace_dns_propagation_seconds`` histogram (commit time in Redis to live
in memory, both in whole milliseconds, so each observation is within 1 ms either way) is read
beside it, and Redis's latency monitor says how long its fsyncs took.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
from typing import Any

from bench.common import BenchError, dns_query, percentile
from services.core import names
from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    WeightedAddress,
    a_records,
    alias_record,
)
from services.store.zone import ZoneStore

PROBE = f"bench-probe.{names.ZONE}"


def probe_address(i: int) -> str:
    return f"127.1.{(i // 250) % 250}.{i % 250 + 1}"


def _batch(i: int) -> ChangeBatch:
    tree = names.tree_name(i, PROBE)
    return ChangeBatch((
        Change(Action.UPSERT, a_records(tree, (WeightedAddress(probe_address(i), 1),))),
        Change(Action.UPSERT, alias_record(PROBE, Alias(tree, i))),
    ), comment=f"bench probe {i}")


def _histogram(metrics_port: int) -> dict[float, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=5).read().decode()
    out: dict[float, float] = {}
    for le, count in re.findall(r'dnsrace_dns_propagation_seconds_bucket\{le="([^"]+)"\} '
                                r'([\d.e+]+)', body):
        out[float(le)] = float(count)
    return out


def _bucket_percentile(delta: dict[float, float], q: float) -> float | None:
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for le in sorted(delta):
        if delta[le] >= total * q / 100:
            return le
    return None


async def measure(zone: ZoneStore, port: int, samples: int, metrics_port: int | None = None,
                  first: int = 1, gap_s: float = 0.01) -> dict[str, Any]:
    """``samples`` commits, each followed by queries until the answer shows it."""
    before = _histogram(metrics_port) if metrics_port else {}
    await zone.client.config_set("latency-monitor-threshold", 1)
    await zone.client.execute_command("LATENCY", "RESET")
    from_commit: list[float] = []
    from_call: list[float] = []
    from_ack: list[float] = []
    queries = 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.2)
    try:
        for n in range(samples):
            i = first + n
            wanted = socket.inet_aton(probe_address(i))
            started = time.perf_counter()
            committed = await zone.apply(_batch(i))
            acked = time.perf_counter()
            deadline = acked + 2.0
            while True:
                queries += 1
                sock.send(dns_query(PROBE, qid=queries & 0xFFFF))
                try:
                    reply = sock.recv(4096)
                except TimeoutError:
                    reply = b""
                now, wall = time.perf_counter(), time.time()
                if reply[-4:] == wanted:
                    break
                if now > deadline:
                    raise BenchError(f"change {i} not visible after 2 s")
            from_commit.append(wall - committed.at_ms / 1000)
            from_call.append(now - started)
            from_ack.append(now - acked)
            await asyncio.sleep(gap_s)
    finally:
        sock.close()
    result: dict[str, Any] = {"samples": samples, "queries": queries,
                              "redis_fsync": await _fsync_latency(zone)}
    for label, values in (("from_commit", from_commit), ("from_apply_call", from_call),
                          ("from_apply_return", from_ack)):
        values.sort()
        result[label] = {f"p{q:g}_ms": round(percentile(values, q) * 1000, 3)
                         for q in (50, 90, 99)} | {"max_ms": round(values[-1] * 1000, 3)}
    if metrics_port:
        after = _histogram(metrics_port)
        delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
        result["server_histogram"] = {
            "changes": delta.get(float("inf"), 0.0),
            "p50_le_ms": _ms(_bucket_percentile(delta, 50)),
            "p99_le_ms": _ms(_bucket_percentile(delta, 99)),
        }
    return result


async def _fsync_latency(zone: ZoneStore) -> dict[str, Any]:
    """Redis's latency monitor: seconds in which an fsync of the append-only file took 1 ms or
    more, and the longest (each second keeps its worst)."""
    history = await zone.client.execute_command("LATENCY", "HISTORY", "aof-fsync-always")
    worst = [int(latency) for _, latency in history or ()]
    return {"appendfsync": (await zone.client.config_get("appendfsync")).get("appendfsync"),
            "seconds_with_fsync_over_1ms": len(worst), "worst_ms": max(worst, default=0)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
