"""``dnsrace demo``: the README's main job.

Brings the cluster up with load, runs the race in ``legacy`` mode and shows the outage live,
shows that the enactors cannot repair it, runs the operators' repair and shows recovery; then
runs the same race against ``safe`` mode, and prints both summaries side by side. Every
process it started is stopped before it returns, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from services.config import Mode, Settings
from services.control.client import ControlClient
from services.core import names
from services.core.population import PopulationOutcome, outcome_of
from services.report.monitor import Monitor
from services.report.render import RunRecord, capture, write_report
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import Cluster, ClusterError, cluster_env
from services.runtime.service import redis_client
from services.store import history
from services.store.plans import PlanStore
from services.store.zone import ZoneStore
from services.tools import operator
from services.tools.commands import switch_automation
from services.tools.race import RaceError, RaceReport, run_race


@dataclass
class ModeResult:
    mode: Mode
    race: RaceReport = field(default_factory=RaceReport)
    reproduced: bool = False
    time_to_empty_s: float | None = None
    failure_ratio_peak: float = 0.0
    time_to_failing_s: float | None = None
    rejected_while_broken: dict[str, float] = field(default_factory=dict)
    outage_s: float | None = None
    recovery_s: float | None = None
    empty_answers: int = 0
    unanswered_polls: int = 0
    """DNS polls with no usable answer in time (timeouts, SERVFAIL): not empty answers."""
    dns_polls: int = 0
    requests: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    empty_since: float | None = None
    """Wall-clock time (epoch seconds) DNS polling first saw the empty answer."""
    repair_started_at: float | None = None
    """Epoch seconds the operator started the repair (its first flip can be live at once)."""
    repaired_at: float | None = None
    """Wall-clock time the operator's repair was committed."""
    record: RunRecord | None = field(default=None, repr=False, compare=False)
    """What the HTML report is drawn from: the run's history and what the monitor saw."""
    fleet: PopulationOutcome | None = None
    """The virtual clients' failing share and ramps (None without a fleet)."""
    resolver: str = "stub"

    @property
    def failed_requests(self) -> int:
        return int(sum(v for k, v in self.requests.items() if k != "ok"))


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


async def _legacy_outage(monitor: Monitor, client: aioredis.Redis, settings: Settings,
                         result: ModeResult, race_ended: float) -> None:
    """Show the empty name, the failing clients, the stuck automation; repair; recovery."""
    ttl, negative = settings.ttl_s, settings.negative_ttl_s
    empty_at = await monitor.wait_until(monitor.dns_empty, 5, "an empty answer")
    result.time_to_empty_s = empty_at - race_ended
    result.empty_since = time.time()
    monitor.note(f"DNS answers NOERROR with no address for {names.REGIONAL}")
    failing = await monitor.wait_until(
        lambda: (monitor.failure_ratio() or 0) >= 0.9, ttl + 2 + 1,
        "client failure ratio >= 0.9")
    result.time_to_failing_s = failing - empty_at
    monitor.note(f"clients failing: {monitor.failure_ratio():.0%} "
                 f"{failing - empty_at:.1f} s after the name went empty")
    _, rejected_before = monitor.totals()
    await asyncio.sleep(4.0)  # a window in which to watch the automation fail, by design
    _, rejected_after = monitor.totals()
    result.rejected_while_broken = _delta(rejected_after, rejected_before)
    still_empty = monitor.dns_empty()
    monitor.note(f"automation still broken after 4 s: rejected batches "
                 f"{result.rejected_while_broken or 'none'}; name "
                 f"{'still empty' if still_empty else 'answers again'}")
    if not still_empty:
        result.problems.append("the name answered again before repair")
    result.failure_ratio_peak = max(
        (monitor.failure_ratio(at=p.at) or 0) for p in monitor.load)
    # As AWS did: the DNS automation off worldwide first, then the repair by hand.
    await switch_automation(client, on=False)
    monitor.note("operator runs 'dnsrace automation off', then 'dnsrace repair'")
    result.repair_started_at = time.time()
    actions = await operator.repair(ZoneStore(client, clock=WALL_CLOCK), PlanStore(client),
                                    names.endpoints(settings.cells))
    result.repaired_at = time.time()
    repaired = [a for a in actions if a.tree_was_missing]
    monitor.note(f"repair restored {len(repaired)} endpoint(s) to plan "
                 f"{actions[0].after if actions else '?'}")
    repair_at = monitor.now()
    answered = await monitor.wait_until(monitor.dns_answers, 3, "DNS answering again")
    result.outage_s = answered - empty_at
    recovered = await monitor.wait_until(monitor.recovered, ttl + negative + 2 + 1,
                                         "clients recovering")
    result.recovery_s = recovered - repair_at
    monitor.note(f"clients recovered {result.recovery_s:.1f} s after repair")
    await switch_automation(client, on=True)
    monitor.note("operator runs 'dnsrace automation on': the enactors apply plans again")


Companion = Callable[[Settings], AbstractAsyncContextManager[object]]
MakeCluster = Callable[[Settings, Path], Cluster]
"""How a mode's cluster is made from its settings and log folder (``--containers``: in
containers, services/containers/demo.py)."""


def _processes(settings: Settings, log_dir: Path) -> Cluster:
    return Cluster(settings, cluster_env(settings), log_dir)


async def run_mode(settings: Settings, mode: Mode, workdir: Path, rate: float,
                   companion: Companion | None = None,
                   make_cluster: MakeCluster = _processes) -> ModeResult:
    """One mode of the demo; ``companion`` (if any) runs alongside from healthy traffic on."""
    result = ModeResult(mode)
    started = time.monotonic()
    settings = settings.replace(mode=mode, state_dir=str(workdir / mode), load_rate=rate,
                                load_duration_s=0.0)
    try:
        cluster = make_cluster(settings, workdir / mode / "logs")
    except ClusterError as e:
        result.problems.append(str(e))
        print(f"!! {e}")
        return result
    print(f"\n=== {mode} mode: starting the cluster (logs in {cluster.log_dir})")
    try:
        cluster.start()
        await asyncio.to_thread(cluster.wait_healthy, 20.0)
        client = redis_client(settings)
        try:
            async with contextlib.AsyncExitStack() as stack, Monitor(
                    settings, label=f"[{mode}] ") as monitor:
                await monitor.wait_until(monitor.healthy, 15, "healthy traffic")
                requests_before, _ = monitor.totals()
                extra = companion(settings) if companion else contextlib.nullcontext()
                await stack.enter_async_context(extra)
                monitor.note("healthy: every request succeeds; now the race")
                result.race = await run_race(
                    ControlClient.for_settings(settings), history.RedisHistory(client),
                    settings.cleanup_age, settings.plan_interval_s, observe_s=0.5,
                    on_step=monitor.note)
                race_ended = monitor.now()
                if mode == "legacy":
                    result.reproduced = result.race.emptied
                    if result.reproduced:
                        await _legacy_outage(monitor, client, settings, result, race_ended)
                    else:
                        result.problems.append("the race did not empty the regional name")
                else:
                    await asyncio.sleep(settings.ttl_s + 2)  # time for an outage to show
                    monitor.note("safe mode: the name kept answering")
                result.empty_answers = monitor.empty_samples()
                result.unanswered_polls = monitor.unanswered_samples()
                result.dns_polls = len(monitor.dns)
                requests_after, _ = monitor.totals()
                result.requests = _delta(requests_after, requests_before)
                result.resolver = settings.resolver
                if settings.load_clients:
                    result.fleet = outcome_of(monitor.fleet_history(), settings.load_clients)
                result.record = await capture(client, monitor, result)
        finally:
            await client.aclose()
    except (ClusterError, RaceError, TimeoutError) as e:
        result.problems.append(str(e))
        print(f"!! {e}")
    finally:
        cluster.stop()
        result.wall_s = time.monotonic() - started
    return result


def _fmt(value: float | None, unit: str = "s") -> str:
    return "-" if value is None else f"{value:.1f} {unit}"


def format_summary(results: list[ModeResult]) -> str:
    rows = [
        ("outage reproduced", lambda r: "yes" if r.reproduced else "no"),
        ("stale flips (I2)", lambda r: str(r.race.stale_flips)),
        ("live trees deleted (I3)", lambda r: str(r.race.live_deletions)),
        ("empty DNS answers seen (I1)", lambda r: str(r.empty_answers)),
        ("DNS polls unanswered", lambda r: f"{r.unanswered_polls} of {r.dns_polls}"),
        ("time to empty after the race", lambda r: _fmt(r.time_to_empty_s)),
        ("clients >= 90% failing after", lambda r: _fmt(r.time_to_failing_s)),
        ("peak client failure ratio", lambda r: f"{r.failure_ratio_peak:.0%}"),
        ("outage length", lambda r: _fmt(r.outage_s)),
        ("recovery after repair", lambda r: _fmt(r.recovery_s)),
        ("clients (resolver)", lambda r: f"{r.fleet.clients if r.fleet else 1} ({r.resolver})"),
        ("fleet peak share failing", lambda r: f"{r.fleet.peak_share:.0%}" if r.fleet else "-"),
        ("fleet ramp 10 -> 90 % failing", lambda r: _fmt(r.fleet.ramp_s if r.fleet else None)),
        ("fleet recovery 90 -> 10 %",
         lambda r: _fmt(r.fleet.recovery_ramp_s if r.fleet else None)),
        ("requests", lambda r: f"{sum(r.requests.values()):.0f}"),
        ("failed requests", lambda r: str(r.failed_requests)),
        ("rejected batches (4 s, by reason)", lambda r: ", ".join(
            f"{k} {v:.0f}" for k, v in r.rejected_while_broken.items()) or "0"),
        ("wall time", lambda r: _fmt(r.wall_s)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'':<{width}}  " + "  ".join(f"{r.mode:<24}" for r in results)]
    for name, cell in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{cell(r):<24}" for r in results))
    for r in results:
        for problem in r.problems:
            lines.append(f"!! {r.mode}: {problem}")
    return "\n".join(lines)


def run_demo(settings: Settings, rate: float, modes: tuple[Mode, ...] = ("legacy", "safe"),
             workdir: Path | None = None, make_cluster: MakeCluster = _processes,
             companion: Companion | None = None) -> int:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="dnsrace-demo-"))
    print(f"dnsrace demo: the October 2025 DynamoDB DNS race, on real processes "
          f"({rate:g} requests/s of load)")
    results: list[ModeResult] = []

    async def main() -> None:
        for mode in modes:
            results.append(await run_mode(settings, mode, workdir, rate, companion,
                                          make_cluster))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    print("\n=== summary\n" + format_summary(results))
    records = [r.record for r in results if r.record]
    if records:
        print(f"\nreport: {write_report('demo', records)}")
    legacy_ok = all(r.reproduced and not r.problems for r in results if r.mode == "legacy")
    safe_ok = all(r.empty_answers == 0 and r.failed_requests == 0 and not r.problems
                  for r in results if r.mode == "safe")
    ok = len(results) == len(modes) and legacy_ok and safe_ok
    shown = "legacy broke as in 2025 and was repaired by hand" + (
        "; safe held" if "safe" in modes else "")
    print("\nverdict: " + (shown if ok else "the demo did not show what it should (see above)"))
    return 0 if ok else 1
