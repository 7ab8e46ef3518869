"""Propagation: from a committed change batch to the first DNS answer that reflects it.

Each sample commits one batch with ``ZoneStore.apply`` (a new tree and the alias flipped to
it, as an enactor does, on a probe endpoint no enactor touches), then asks the server over
UDP in a tight loop until the answer carries the new address.  Two clocks are reported:
from the ``apply`` call (includes the commit's round-trip: an upper bound) and from its
return (the commit is acknowledged).  The server's own ``dnsrace_dns_propagation_seconds``
histogram (commit time in Redis to live in memory, millisecond clock) is read beside it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
from typing import Any

from bench.common import BenchError, dns_query, percentile
from services import names
from services.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    WeightedAddress,
    a_records,
    alias_record,
)
from services.zone_store import ZoneStore

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
            await zone.apply(_batch(i))
            acked = time.perf_counter()
            deadline = acked + 2.0
            while True:
                queries += 1
                sock.send(dns_query(PROBE, qid=queries & 0xFFFF))
                try:
                    reply = sock.recv(4096)
                except TimeoutError:
                    reply = b""
                now = time.perf_counter()
                if reply[-4:] == wanted:
                    break
                if now > deadline:
                    raise BenchError(f"change {i} not visible after 2 s")
            from_call.append(now - started)
            from_ack.append(now - acked)
            await asyncio.sleep(gap_s)
    finally:
        sock.close()
    result: dict[str, Any] = {"samples": samples, "queries": queries}
    for label, values in (("from_apply_call", from_call), ("from_apply_return", from_ack)):
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


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
