"""``dnsrace soak``: random faults under load for a while, then the report a Jepsen user expects.

Faults, drawn by a seeded RNG one after another with short gaps:

- ``enactor_kill``: SIGKILL an enactor (mid-apply, whenever it is), restart it 0.5-2 s later;
- ``enactor_pause``: SIGSTOP an enactor for 1-5 s (the control API's fault);
- ``enactor_stall``: an enactor waits at a random point of its work for 1-8 s;
- ``lock_delay``: an enactor loses every lock for 1-5 s;
- ``redis_restart``: Redis stopped and started again (append-only file on);
- ``planner_kill``: SIGKILL the planner, restart it 0.5-2 s later.

While they run, DNS is polled like ``dig`` (every 0.2 s, no cache) and the load clients count
their answers; afterwards the history is checked for I1-I3 and the time to converge (I4) after
the last fault is measured. A process that dies on its own is restarted and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from services.config import Mode, Settings
from services.control.client import ControlClient, ControlError
from services.core import checker, events, names
from services.core.faults import StallPoint
from services.report.monitor import Monitor
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import Cluster, ClusterError, cluster_env
from services.runtime.service import redis_client
from services.store import history
from services.tools.scenario import converged

FAULT_TYPES = ("enactor_kill", "enactor_pause", "enactor_stall", "lock_delay", "redis_restart",
               "planner_kill")
ENACTORS = {az: f"enactor_{az.removeprefix('use1-')}" for az in names.AZS}


@dataclass
class SoakReport:
    mode: Mode
    seconds: float = 0.0
    dns_reads: int = 0
    client_resolutions: int = 0
    empty_answers: int = 0
    stale_answers: int = 0
    max_generation_lag: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    converged_after_s: float | None = None
    violations: list[checker.Violation] = field(default_factory=list)
    unexpected_restarts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        inv = Counter(v.invariant.name for v in self.violations)
        converged = "-" if self.converged_after_s is None else f"{self.converged_after_s:.1f} s"
        lines = [
            f"soak in {self.mode} mode for {self.seconds:.0f} s",
            f"  DNS reads checked     {self.dns_reads} by polling, "
            f"{self.client_resolutions} by the load clients",
            f"  empty answers         {self.empty_answers}",
            f"  stale answers         {self.stale_answers}",
            f"  max generation lag    {self.max_generation_lag:.0f} (newest plan - served, "
            f"regional)",
            f"  faults injected       {sum(self.faults.values())}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
            f"  converged after last  {converged}",
            f"  violations (history)  {dict(inv) or 'none'}",
        ]
        if self.unexpected_restarts:
            lines.append(f"  crashed on their own  {', '.join(self.unexpected_restarts)}")
        lines += [f"  !! {p}" for p in self.problems]
        return "\n".join(lines)


class Nemesis:
    """Draws and injects faults; knows the cluster (for kills) and the control API."""

    def __init__(self, cluster: Cluster, control: ControlClient, sink: history.RedisHistory,
                 rng: random.Random, types: tuple[str, ...]) -> None:
        self.cluster = cluster
        self.control = control
        self.sink = sink
        self.rng = rng
        self.types = types
        self.counts: Counter[str] = Counter()

    async def _record(self, event: events.Event) -> None:
        with contextlib.suppress(Exception):  # Redis may be the thing that is down
            await self.sink.record(event)

    async def _kill_and_restart(self, name: str, kind: str) -> None:
        fault_id = f"{kind}-{self.counts[kind]}"
        down_s = self.rng.uniform(0.5, 2.0)
        await self._record(events.FaultStarted(
            source="soak", fault_id=fault_id, type=kind, target=name,
            expires_ms=WALL_CLOCK.now_ms() + int(down_s * 1000)))
        await asyncio.to_thread(self.cluster.kill, name)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.cluster.start, (name,))
        await self._record(events.FaultEnded(source="soak", fault_id=fault_id, type=kind,
                                              target=name, why="restarted"))

    async def inject(self) -> float:
        """Inject one fault; return how long it lasts (seconds)."""
        kind = self.rng.choice(self.types)
        self.counts[kind] += 1
        az = self.rng.choice(names.AZS)
        if kind == "enactor_kill":
            await self._kill_and_restart(ENACTORS[az], kind)
            return 0.0
        if kind == "planner_kill":
            await self._kill_and_restart("planner", kind)
            return 0.0
        if kind == "redis_restart":
            fault_id = f"{kind}-{self.counts[kind]}"
            await self._record(events.FaultStarted(source="soak", fault_id=fault_id,
                                                    type=kind, target="redis", expires_ms=0))
            await asyncio.to_thread(self.cluster.restart, "redis")
            await self._record(events.FaultEnded(source="soak", fault_id=fault_id, type=kind,
                                                  target="redis", why="restarted"))
            return 0.0
        if kind == "enactor_stall":
            duration = self.rng.uniform(1.0, 8.0)
            point = self.rng.choice(list(StallPoint))
            await self.control.add(kind, az, duration, {"point": str(point)})
            return duration
        duration = self.rng.uniform(1.0, 5.0)
        await self.control.add(kind, az, duration)
        return duration


async def run_soak(settings: Settings, mode: Mode, duration_s: float, seed: int,
                   workdir: Path, types: tuple[str, ...] = FAULT_TYPES,
                   converge_window_s: float = 15.0) -> SoakReport:
    report = SoakReport(mode)
    settings = settings.replace(mode=mode, state_dir=str(workdir / mode), load_duration_s=0.0)
    cluster = Cluster(settings, cluster_env(settings), workdir / mode / "logs")
    started = time.monotonic()
    try:
        cluster.start()
        await asyncio.to_thread(cluster.wait_healthy, 20.0)
        client = redis_client(settings)
        try:
            async with Monitor(settings, label=f"[soak/{mode}] ", print_every_s=5.0) as monitor:
                await monitor.wait_until(monitor.healthy, 20, "healthy traffic")
                since_ms = WALL_CLOCK.now_ms()
                dns_before = len(monitor.dns)
                resolutions_before = _resolutions(monitor)
                stale_before = monitor.client_stale_answers()
                nemesis = Nemesis(cluster, ControlClient.for_settings(settings),
                                  history.RedisHistory(client, clock=WALL_CLOCK),
                                  random.Random(seed), types)
                deadline = time.monotonic() + duration_s
                while time.monotonic() < deadline:
                    for name in cluster.revive():
                        report.unexpected_restarts.append(name)
                    try:
                        lasts = await nemesis.inject()
                    except ControlError as e:
                        report.problems.append(f"fault not injected: {e}")
                        lasts = 1.0
                    monitor.note(f"fault #{sum(nemesis.counts.values())} injected")
                    # The next fault once this one is over, after a short gap.
                    await asyncio.sleep(lasts + nemesis.rng.uniform(0.5, 2.0))
                last_fault = time.monotonic()
                while time.monotonic() - last_fault < converge_window_s:
                    if await converged(client):
                        report.converged_after_s = time.monotonic() - last_fault
                        break
                    await asyncio.sleep(0.2)
                report.faults = nemesis.counts
                report.dns_reads = len(monitor.dns) - dns_before
                report.client_resolutions = int(_resolutions(monitor) - resolutions_before)
                report.empty_answers = sum(1 for d in monitor.dns[dns_before:] if d.empty)
                report.stale_answers = monitor.stale_answers + int(
                    monitor.client_stale_answers() - stale_before)
                report.max_generation_lag = max(
                    (p.newest_generation - p.served_generation for p in monitor.load
                     if p.served_generation > 0), default=0.0)
            recorded = [e for _, e in await history.RedisHistory(client).read()
                      if e.at_ms >= since_ms]
            report.violations = checker.check(recorded)
        finally:
            await client.aclose()
    except (ClusterError, TimeoutError) as e:
        report.problems.append(str(e))
    finally:
        cluster.stop()
        report.seconds = time.monotonic() - started
    return report


def _resolutions(monitor: Monitor) -> float:
    return monitor.load[-1].client_resolutions if monitor.load else 0.0
