"""``dnsrace watch``: the numbers that tell the story, live in a terminal.

Several times a second it asks DNS for the regional name (as ``dig`` would, no cache) and
reads every process's ``/metrics`` directly (no Prometheus needed), then shows one frame:
what the name answers, how many clients fail, the generation served against the newest
plan, what each enactor is doing and the errors it meets, and the active faults. Rates are
taken over the last ``--window`` seconds of scrapes. Building a frame is a pure function of
two snapshots; only :func:`take_snapshot` touches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

import aiohttp

from services.config import Settings
from services.core import names
from services.runtime.scrape import (
    NETWORK_PROCESSES,
    Samples,
    metrics_urls,
    network_metrics_urls,
    scrape,
)
from services.tools.watch_network import (
    Ec2View,
    NetworkView,
    ec2_view,
    network_view,
    render_ec2,
    render_network,
)

if TYPE_CHECKING:  # the resolver registers client metrics: import it only where it runs
    from loadgen.resolver import StubResolver

REFRESH_S = 0.25
WINDOW_S = 1.0
CLEAR = "\x1b[H\x1b[J"
NAMED = ("regional", "fips", "dualstack")


@dataclass(frozen=True)
class Probe:
    """One DNS question for the regional name: how it ended and how many addresses came."""

    outcome: str
    addresses: int


@dataclass(frozen=True)
class Snapshot:
    at: float
    """Monotonic seconds."""
    processes: dict[str, Samples]
    """Samples by process name; empty when the process did not answer."""
    probe: Probe | None = None

    def merged(self) -> Samples:
        out = Samples()
        for samples in self.processes.values():
            out.merge(samples)
        return out


@dataclass(frozen=True)
class EnactorView:
    az: str
    state: str
    checked: int
    applied: int
    """Generation this enactor last made the regional alias name."""
    plans_per_s: float
    locks_lost: float
    locks_lost_per_s: float
    rejected: dict[str, float]
    """Rejected batches so far, by reason (only reasons seen)."""
    rejected_per_s: float
    round_errors: float


@dataclass(frozen=True)
class Frame:
    elapsed_s: float
    window_s: float
    probe: Probe | None
    rcodes_per_s: dict[str, float]
    empty_per_s: float
    requests_per_s: float
    failure_ratio: float | None
    failures_per_s: dict[str, float]
    newest: int
    served: dict[str, int]
    enactors: list[EnactorView]
    faults: list[tuple[str, str]]
    down: list[str] = field(default_factory=list)
    fleet_clients: int = 0
    fleet_failing: int = 0
    """Virtual clients of the fleet, and those whose last request failed (0: no fleet)."""
    network: NetworkView | None = None
    ec2: Ec2View | None = None
    """Network Manager, instances, NLB and its clients, when any of them answers."""


def _delta(cur: Samples, prev: Samples | None, name: str, label: str,
           **match: str) -> dict[str, float]:
    if prev is None:
        return {}
    now, before = cur.by(name, label, **match), prev.by(name, label, **match)
    return {k: max(0.0, v - before.get(k, 0.0)) for k, v in now.items()}


def _total_delta(cur: Samples, prev: Samples | None, name: str, **match: str) -> float:
    if prev is None:
        return 0.0
    return max(0.0, cur.sum(name, **match) - prev.sum(name, **match))


def _enactor_view(az: str, cur: Samples, prev: Samples | None, span: float, up: bool,
                  faults: list[tuple[str, str]]) -> EnactorView:
    def per_s(value: float) -> float:
        return value / span if span > 0 else 0.0

    rejected = {k: v for k, v in cur.by("dnsrace_enactor_batches_rejected_total", "reason",
                                        az=az).items() if v > 0}
    rejected_per_s = per_s(_total_delta(cur, prev, "dnsrace_enactor_batches_rejected_total",
                                        az=az))
    on_me = {kind for kind, target in faults if target in (az, "all")}
    if not up:
        state = "down"
    elif "enactor_pause" in on_me:
        state = "paused (fault)"
    elif "enactor_stall" in on_me:
        state = "stalled (fault)"
    elif rejected_per_s > 0:
        reasons = _delta(cur, prev, "dnsrace_enactor_batches_rejected_total", "reason", az=az)
        state = "rejected: " + max(reasons, key=lambda k: reasons[k])
    elif "lock_delay" in on_me:
        state = "lock delayed (fault)"
    else:
        state = "ok"
    return EnactorView(
        az=az, state=state,
        checked=int(cur.sum("dnsrace_enactor_checked_generation", az=az)),
        applied=int(cur.sum("dnsrace_enactor_applied_generation", az=az, endpoint="regional")),
        plans_per_s=per_s(_total_delta(cur, prev, "dnsrace_enactor_plans_applied_total", az=az)),
        locks_lost=cur.sum("dnsrace_enactor_locks_total", az=az, outcome="lost"),
        locks_lost_per_s=per_s(_total_delta(cur, prev, "dnsrace_enactor_locks_total", az=az,
                                            outcome="lost")),
        rejected=rejected, rejected_per_s=rejected_per_s,
        round_errors=cur.sum("dnsrace_enactor_round_errors_total", az=az),
    )


def build_frame(prev: Snapshot | None, cur: Snapshot, started: float) -> Frame:
    """The frame for ``cur``, with rates over ``cur.at - prev.at`` (none without ``prev``)."""
    now, before = cur.merged(), prev.merged() if prev is not None else None
    span = cur.at - prev.at if prev is not None else 0.0

    def per_s(values: dict[str, float]) -> dict[str, float]:
        return {k: v / span for k, v in values.items()} if span > 0 else {}

    requests = _delta(now, before, "dnsrace_client_requests_total", "outcome")
    total = sum(requests.values())
    failed = {k: v for k, v in requests.items() if k != "ok" and v > 0}
    faults = sorted((dict(labels).get("type", "?"), dict(labels).get("target", "?"))
                    for (name, labels), value in now.values.items()
                    if name == "dnsrace_fault_active" and value > 0)
    enactors = []
    for az in names.AZS:
        process = f"enactor_{az.removeprefix('use1-')}"
        up = bool(cur.processes.get(process, Samples()).values)
        enactors.append(_enactor_view(az, now, before, span, up, faults))
    served = now.by("dnsrace_dns_generation_served", "endpoint")
    return Frame(
        elapsed_s=cur.at - started, window_s=span, probe=cur.probe,
        rcodes_per_s=per_s(_delta(now, before, "dnsrace_dns_queries_total", "rcode")),
        empty_per_s=(_total_delta(now, before, "dnsrace_dns_empty_answers_total",
                                  endpoint="regional") / span if span > 0 else 0.0),
        requests_per_s=total / span if span > 0 else 0.0,
        failure_ratio=sum(failed.values()) / total if total > 0 else None,
        failures_per_s=per_s(failed),
        newest=int(now.sum("dnsrace_planner_newest_generation")),
        served={k: int(served[k]) for k in NAMED if k in served},
        enactors=enactors, faults=faults,
        down=sorted(name for name, samples in cur.processes.items()
                    if not samples.values and name not in NETWORK_PROCESSES),
        fleet_clients=int(now.sum("dnsrace_client_fleet_clients")),
        fleet_failing=int(now.sum("dnsrace_client_fleet_failing")),
        network=network_view(cur.processes, now, before, span),
        ec2=ec2_view(cur.processes, now, before, span),
    )


def _answer(probe: Probe | None) -> str:
    if probe is None:
        return "not asked"
    if probe.outcome == "ok":
        return f"{probe.addresses} address{'es' if probe.addresses != 1 else ''}"
    if probe.outcome == "dns_nodata":
        return "NOERROR with no address  <== EMPTY"
    return {"dns_nxdomain": "NXDOMAIN", "dns_timeout": "no answer (timeout)",
            "dns_servfail": "SERVFAIL"}.get(probe.outcome, probe.outcome)


def _rates(values: dict[str, float]) -> str:
    shown = [f"{k} {v:.0f}/s" for k, v in sorted(values.items(), key=lambda kv: -kv[1])
             if v > 0]
    return "  ".join(shown) or "none"


def render(frame: Frame) -> str:
    """The frame as text, one block of lines."""
    ratio = "-" if frame.failure_ratio is None else f"{frame.failure_ratio:.1%}"
    lines = [
        f"dnsrace watch  +{frame.elapsed_s:.1f} s  (rates over {frame.window_s:.1f} s)",
        f"regional name  {names.REGIONAL}: {_answer(frame.probe)}",
        f"dns server     answers {_rates(frame.rcodes_per_s)}; "
        f"empty answers (regional) {frame.empty_per_s:.0f}/s",
        f"clients        {frame.requests_per_s:.0f} req/s  failing {ratio}"
        + (f"  ({_rates(frame.failures_per_s)})" if frame.failures_per_s else ""),
    ]
    if frame.fleet_clients:
        lines.append(f"client fleet   {frame.fleet_failing} of {frame.fleet_clients} clients "
                     f"failing ({frame.fleet_failing / frame.fleet_clients:.1%})")
    served = "  ".join(
        f"{k} {v}" + (" (EMPTY)" if v == 0 else f" ({frame.newest - v} behind)"
                      if frame.newest - v > 1 else "")
        for k, v in frame.served.items())
    lines.append(f"generation     newest plan {frame.newest}; served {served or '-'}")
    lines.append(f"enactors       {'az':<9} {'state':<32} {'checked':>7} {'applied':>7} "
                 f"{'plans/s':>7}  {'locks lost':<14} rejected")
    for e in frame.enactors:
        rejected = ", ".join(f"{k} {v:.0f}" for k, v in sorted(e.rejected.items())) or "0"
        if e.rejected_per_s > 0:
            rejected += f" ({e.rejected_per_s:.1f}/s)"
        errors = f"  round errors {e.round_errors:.0f}" if e.round_errors else ""
        lost = f"{e.locks_lost:.0f} ({e.locks_lost_per_s:.1f}/s)"
        lines.append(f"               {e.az:<9} {e.state:<32} {e.checked:>7} {e.applied:>7} "
                     f"{e.plans_per_s:>7.1f}  {lost:<14} {rejected}{errors}")
    faults = ", ".join(f"{kind} on {target}" for kind, target in frame.faults)
    lines.append(f"faults         {faults or 'none'}")
    lines += render_ec2(frame.ec2)
    lines += render_network(frame.network)
    if frame.down:
        lines.append(f"not answering  {', '.join(frame.down)}")
    return "\n".join(lines)


async def take_snapshot(session: aiohttp.ClientSession, urls: dict[str, str],
                        resolver: StubResolver | None, timeout_s: float = 0.5) -> Snapshot:
    """Scrape every process and ask DNS once, concurrently."""

    async def probe() -> Probe | None:
        if resolver is None:
            return None
        answer = await resolver.query(names.REGIONAL)
        return Probe(str(answer.outcome), len(answer.addresses))

    asked = asyncio.ensure_future(probe())
    scraped = await asyncio.gather(*(scrape(session, [url], timeout_s) for url in urls.values()))
    return Snapshot(time.monotonic(), dict(zip(urls, scraped, strict=True)), await asked)


@dataclass
class WatchOptions:
    refresh_s: float = REFRESH_S
    window_s: float = WINDOW_S
    seconds: float = 0.0
    """Stop after this long; 0: until interrupted."""
    once: bool = False
    loadgens: int | None = None
    """Load generators to read; None: as many as the cluster starts for the rate."""
    probe: bool = True


async def watch(settings: Settings, options: WatchOptions, out: TextIO) -> int:
    urls = metrics_urls(settings, options.loadgens) | network_metrics_urls(settings)
    from loadgen.resolver import StubResolver  # here only: it registers client metrics

    resolver = (StubResolver(settings.dns_host, settings.dns_port, timeout_s=0.5, cache=False)
                if options.probe else None)
    started = time.monotonic()
    clear = not options.once and out.isatty()
    try:
        async with aiohttp.ClientSession() as session:
            first = await take_snapshot(session, urls, resolver)
            if options.once:
                await asyncio.sleep(options.window_s)  # the rate window, an observation
                cur = await take_snapshot(session, urls, resolver)
                if not any(s.values for s in cur.processes.values()):
                    print(f"dnsrace watch: no process answers /metrics (e.g. "
                          f"{urls['planner']}); is the cluster up ('dnsrace up')?",
                          file=sys.stderr)
                    return 1
                out.write(render(build_frame(first, cur, started)) + "\n")
                out.flush()
                return 0
            kept: deque[Snapshot] = deque([first])
            while not options.seconds or time.monotonic() - started < options.seconds:
                next_at = time.monotonic() + options.refresh_s
                cur = await take_snapshot(session, urls, resolver)
                kept.append(cur)
                while len(kept) > 2 and cur.at - kept[1].at >= options.window_s:
                    kept.popleft()
                prev = kept[0] if kept[0] is not cur else None
                out.write((CLEAR if clear else "\n") + render(build_frame(prev, cur, started))
                          + "\n")
                out.flush()
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        if resolver is not None:
            await resolver.aclose()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true",
                        help="print one frame (rates over --window) and exit")
    parser.add_argument("--seconds", type=float, default=0.0, metavar="SECONDS",
                        help="stop after this long (default: until Ctrl-C)")
    parser.add_argument("--refresh", type=float, default=REFRESH_S, metavar="SECONDS",
                        help=f"time between frames (default {REFRESH_S})")
    parser.add_argument("--window", type=float, default=WINDOW_S, metavar="SECONDS",
                        help=f"rates are taken over this long (default {WINDOW_S})")
    parser.add_argument("--loadgen", type=int, metavar="N",
                        help="number of load generators to read (default: as many as the "
                             "cluster starts for DNSRACE_LOAD_RATE)")


def options_from(args: argparse.Namespace) -> WatchOptions:
    for name in ("refresh", "window"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name} must be > 0")
    if args.seconds < 0 or (args.loadgen is not None and args.loadgen < 1):
        raise ValueError("--seconds must be >= 0 and --loadgen >= 1")
    return WatchOptions(refresh_s=args.refresh, window_s=args.window, seconds=args.seconds,
                        once=args.once, loadgens=args.loadgen)


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    """The ``dnsrace watch`` command."""
    try:
        options = options_from(args)
    except ValueError as e:
        print(f"dnsrace watch: {e}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(watch(settings, options, out or sys.stdout))
    except KeyboardInterrupt:
        return 0
