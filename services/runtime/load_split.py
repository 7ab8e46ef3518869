"""The client fleet spread over load generator processes as the rate needs (issue 19).

One load generator process holds about 2,000 requests/s with 1,000 virtual clients on the
2-core machine (bench/fleet_bench.py, docs/benchmarks.md); above that it falls behind its
schedule. The cluster therefore starts ``ceil(load_rate / load_rate_per_process)`` copies
(``loadgen``, ``loadgen.2``, ...), or as many as ``dnsrace up --loadgen N`` asks, and gives
copy ``i`` its share of the rate and of the virtual clients and its own /metrics port, so
that the copies together make the one fleet the settings describe. Pure: no I/O.
"""

from __future__ import annotations

import math

from services.config import Settings

MAX_LOADGENS = 6
"""Load generators' /metrics ports are ``metrics_port_base + 6 ..``; DWFM's start at +12."""


def loadgen_count(settings: Settings) -> int:
    """How many load generator processes the rate needs (1 .. MAX_LOADGENS), never more than
    there are virtual clients (a copy without clients would be a shared cache, not a fleet)."""
    count = max(1, math.ceil(settings.load_rate / settings.load_rate_per_process))
    if settings.load_clients:
        count = min(count, settings.load_clients)
    return min(count, MAX_LOADGENS)


def share(total: int, copies: int, index: int) -> int:
    """Copy ``index``'s part of ``total`` split evenly over ``copies`` (the first get one more
    when it does not divide)."""
    return total // copies + (1 if index < total % copies else 0)


def copy_args(settings: Settings, copies: int, index: int) -> list[str]:
    """The arguments ``dnsrace loadgen`` copy ``index`` of ``copies`` takes beyond the
    Procfile's: its rate, its clients, its /metrics port."""
    if not 1 <= copies <= MAX_LOADGENS or not 0 <= index < copies:
        raise ValueError(f"load generator {index} of {copies}: there may be 1 to "
                         f"{MAX_LOADGENS} copies")
    return ["--rate", f"{settings.load_rate / copies:g}",
            "--clients", str(share(settings.load_clients, copies, index)),
            "--metrics-port", str(settings.metrics_port("loadgen", index))]


def copy_name(index: int) -> str:
    """The Procfile entry's name for copy ``index``: loadgen, loadgen.2, loadgen.3, ..."""
    return "loadgen" if index == 0 else f"loadgen.{index + 1}"
