"""Scenarios: a TOML file with a load profile, a fault timeline and expectations.

``dnsrace run scenarios/race.toml --mode legacy`` starts a fresh cluster, plays the timeline
under load, checks the expectations for the mode, and exits non-zero when one fails::

    name = "race"
    [load]
    rate = 200            # requests/s
    settle_s = 8          # watch this long after the last step
    [[timeline]]          # steps run in order; at_s counts from healthy traffic
    at_s = 2
    action = "race"       # race | fault | repair | reset
    [[timeline]]
    at_s = 4
    action = "fault"
    type = "lb_health"
    target = "lb-001"
    duration_s = 5
    [expect.legacy]
    outage = true                 # the regional name answered with no address
    violations = ["I1", "I3"]     # exactly these invariants violated (per dnsrace check)
    [expect.safe]
    outage = false
    max_failed_requests = 0
    max_stale_answers = 0         # DNS polling and the load clients (EDNS generation option)
    violations = []
    converge_within_s = 5         # every endpoint on the newest plan after the last step
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services import resources
from services.config import Mode, Settings
from services.control.client import ControlClient, ControlError
from services.core import checker, events, names
from services.core.population import FleetEvents, PopulationOutcome, fleet_events, outcome_of
from services.errors import DnsraceError
from services.report.monitor import Monitor
from services.report.render import RunRecord
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import Cluster, ClusterError, cluster_env
from services.runtime.service import redis_client
from services.store import history
from services.store.plans import PlanStore
from services.store.zone import ZoneStore
from services.tools import nemesis, operator
from services.tools.race import RaceError, run_race
from services.tools.supervisor import Supervisor

Action = Literal["race", "fault", "repair", "reset"]
ACTIONS: tuple[str, ...] = ("race", "fault", "repair", "reset")
INVARIANTS = {"I1": checker.Invariant.I1, "I2": checker.Invariant.I2,
              "I3": checker.Invariant.I3}


class ScenarioError(DnsraceError, ValueError):
    """The scenario file is not usable; the message says where and why."""


@dataclass(frozen=True)
class Step:
    at_s: float
    action: Action
    fault: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Expectations:
    outage: bool | None = None
    violations: tuple[str, ...] | None = None
    max_failed_requests: int | None = None
    max_stale_answers: int | None = None
    converge_within_s: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float
    settle_s: float
    timeline: tuple[Step, ...]
    expect: dict[str, Expectations]


def _require(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ScenarioError(f"{where}: '{key}' is missing")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ScenarioError(f"{where}: '{key}' has the wrong type ({value!r})")
    return value


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(extra)}; "
                            f"allowed: {', '.join(sorted(allowed))}")


def parse(text: str, source: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    _unknown(data, {"name", "description", "load", "timeline", "expect", "nemesis"}, source)
    load = data.get("load", {})
    _unknown(load, {"rate", "settle_s"}, f"{source} [load]")
    rate = float(_require(load, "rate", (int, float), f"{source} [load]"))
    settle = float(load.get("settle_s", 5))
    if rate <= 0 or settle < 0:
        raise ScenarioError(f"{source} [load]: rate must be > 0 and settle_s >= 0")
    steps = []
    for i, raw in enumerate(data.get("timeline", [])):
        where = f"{source} timeline step {i + 1}"
        action = _require(raw, "action", str, where)
        if action not in ACTIONS:
            raise ScenarioError(f"{where}: action {action!r} is not one of "
                                f"{', '.join(ACTIONS)}")
        fault_keys = {"type", "target", "duration_s", "params"} if action == "fault" else set()
        _unknown(raw, {"at_s", "action"} | fault_keys, where)
        at_s = float(_require(raw, "at_s", (int, float), where))
        fault = {k: raw[k] for k in fault_keys if k in raw}
        steps.append(Step(at_s, action, fault))
    if "nemesis" in data:
        steps += [Step(at, "fault", fault) for at, fault in _nemesis(data["nemesis"], source)]
        steps.sort(key=lambda step: step.at_s)
    if [s.at_s for s in steps] != sorted(s.at_s for s in steps):
        raise ScenarioError(f"{source}: timeline steps must be in order of at_s")
    expect = {}
    for mode, table in data.get("expect", {}).items():
        where = f"{source} [expect.{mode}]"
        if mode not in ("legacy", "safe"):
            raise ScenarioError(f"{where}: the mode must be legacy or safe")
        _unknown(table, {"outage", "violations", "max_failed_requests", "max_stale_answers",
                         "converge_within_s"}, where)
        violations = table.get("violations")
        if violations is not None and not set(violations) <= set(INVARIANTS):
            raise ScenarioError(f"{where}: violations may name {', '.join(INVARIANTS)}")
        expect[mode] = Expectations(
            outage=table.get("outage"),
            violations=tuple(violations) if violations is not None else None,
            max_failed_requests=table.get("max_failed_requests"),
            max_stale_answers=table.get("max_stale_answers"),
            converge_within_s=table.get("converge_within_s"),
        )
    return Scenario(str(data.get("name", source)), rate, settle, tuple(steps), expect)


def _nemesis(table: dict[str, Any], source: str) -> list[tuple[float, dict[str, Any]]]:
    where = f"{source} [nemesis]"
    _unknown(table, {"seed", "duration_s", "faults"}, where)
    faults = tuple(table.get("faults", nemesis.KINDS))
    if not faults or not set(faults) <= set(nemesis.KINDS):
        raise ScenarioError(f"{where}: faults must be some of {', '.join(nemesis.KINDS)}")
    spec = nemesis.NemesisSpec(int(_require(table, "seed", int, where)),
                               float(_require(table, "duration_s", (int, float), where)), faults)
    return nemesis.timeline(spec)


def load_file(path: Path) -> Scenario:
    """A scenario file, or one shipped with the package (``scenarios/race.toml``) when the
    working directory has no such file."""
    shipped = resources.scenario_text(path)
    if shipped is not None:
        return parse(shipped, str(path))
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror}") from None
    return parse(text, str(path))


@dataclass
class Outcome:
    mode: Mode
    empty_answers: int = 0
    failed_requests: int = 0
    requests: int = 0
    violations: list[checker.Violation] = field(default_factory=list)
    converged_after_s: float | None = None
    stale_answers: int = 0
    """Answers naming an older plan than seen before: DNS polling plus the load clients."""
    outage_s: float = 0.0
    """Seconds from the first to the last empty answer DNS polling saw."""
    stale_flips: int = 0
    live_deletions: int = 0
    failures: list[str] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    """Processes the supervisor started again: crashed, or at a crash fault's end."""
    record: RunRecord | None = field(default=None, repr=False, compare=False)
    resolver: str = "stub"
    clients: int = 0
    failing: PopulationOutcome | None = None
    """The virtual clients' failing share and ramps (None without a fleet)."""
    nodata_from_cache: float = 0.0
    """Empty answers Unbound served from its cache during the run."""
    events: FleetEvents | None = None
    """When the empty answer, 90 % failing, the repair and recovery happened (s from the
    timeline's start)."""
    nodata_from_cache_in_outage: float = 0.0
    """Of those, the ones served from the first empty answer to the repair (or the end)."""

    @property
    def ok(self) -> bool:
        return not self.failures


async def converged(client: Any) -> bool:
    """Every endpoint names an existing tree of the newest plan or the one before (I4)."""
    zone, plans = ZoneStore(client, clock=WALL_CLOCK), PlanStore(client)
    newest = await plans.newest_generation()
    snapshot = await zone.snapshot()
    for endpoint in snapshot.names():
        alias = snapshot.alias(endpoint) if not endpoint.startswith("_") else None
        if alias is None:
            continue
        if alias.generation < newest - 1 or not snapshot.addresses(alias.target):
            return False
    return True


async def _play(step: Step, settings: Settings, client: Any, monitor: Monitor) -> None:
    control = ControlClient.for_settings(settings)
    if step.action == "race":
        await run_race(control, history.RedisHistory(client), settings.cleanup_age,
                       settings.plan_interval_s, observe_s=0.5, on_step=monitor.note)
    elif step.action == "fault":
        f = step.fault
        added = await control.add(str(f.get("type")), str(f.get("target")),
                                  float(f.get("duration_s", 0)), dict(f.get("params", {})))
        monitor.note(f"fault {added['type']} on {added['target']} until {added['expires_at']}")
    elif step.action == "repair":
        actions = await operator.repair(ZoneStore(client, clock=WALL_CLOCK), PlanStore(client),
                                        names.endpoints(settings.cells))
        monitor.note(f"repair: {len(actions)} endpoint(s) changed")
    else:
        ended = await control.reset()
        monitor.note(f"reset: {len(ended)} fault(s) ended")


CONVERGENCE_WINDOW_S = 5.0


async def run_scenario(scenario: Scenario, settings: Settings, mode: Mode,
                       workdir: Path, quiet: bool = False) -> Outcome:
    outcome = Outcome(mode)
    expect = scenario.expect.get(mode, Expectations())
    settings = settings.replace(mode=mode, state_dir=str(workdir / mode),
                                load_rate=scenario.rate, load_duration_s=0.0)
    cluster = Cluster(settings, cluster_env(settings), workdir / mode / "logs")
    supervisor = Supervisor(cluster)  # restarts crashes, carries out crash faults
    stop = asyncio.Event()
    supervising: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(supervisor.start)
        await asyncio.to_thread(cluster.wait_healthy, 20.0)
        supervising = asyncio.create_task(supervisor.run(stop))
        client = redis_client(settings)
        try:
            out = (lambda _: None) if quiet else print
            async with Monitor(settings, label=f"[{scenario.name}/{mode}] ",
                               out=out) as monitor:
                # generous: 1,000 clients start slowly on a busy box
                await monitor.wait_until(monitor.healthy, 30, "healthy traffic")
                before, _ = monitor.totals()
                stale_before = monitor.client_stale_answers()
                since_ms = WALL_CLOCK.now_ms()
                t0, origin = time.monotonic(), monitor.now()
                repair_at: float | None = None
                for step in scenario.timeline:
                    await asyncio.sleep(max(0.0, step.at_s - (time.monotonic() - t0)))
                    await _play(step, settings, client, monitor)
                    if step.action == "repair" and repair_at is None:
                        repair_at = monitor.now() - origin
                # Convergence counts from the end of the last fault.
                ends = max((s.at_s + float(s.fault.get("duration_s", 0))
                            for s in scenario.timeline), default=0.0)
                await asyncio.sleep(max(0.0, ends - (time.monotonic() - t0)))
                last_step = time.monotonic()
                window = expect.converge_within_s or CONVERGENCE_WINDOW_S
                while not await converged(client) and time.monotonic() < last_step + window:
                    await asyncio.sleep(0.1)
                if await converged(client):
                    outcome.converged_after_s = time.monotonic() - last_step
                await asyncio.sleep(max(0.0, scenario.settle_s - (time.monotonic() - last_step)))
                after, _ = monitor.totals()
                outcome.empty_answers = monitor.empty_samples()
                outcome.stale_answers = monitor.stale_answers + int(
                    monitor.client_stale_answers() - stale_before)
                empty = [d.at for d in monitor.dns if d.empty]
                outcome.outage_s = empty[-1] - empty[0] + monitor.dns_every_s if empty else 0.0
                outcome.requests = int(sum(after.values()) - sum(before.values()))
                outcome.failed_requests = int(sum(
                    v - before.get(k, 0) for k, v in after.items() if k != "ok"))
                outcome.resolver, outcome.clients = settings.resolver, settings.load_clients
                if settings.load_clients:
                    outcome.failing = outcome_of(monitor.fleet_history(), settings.load_clients)
                if monitor.load:
                    outcome.nodata_from_cache = monitor.load[-1].resolver_nodata_from_cache
                _time_events(outcome, monitor, origin, repair_at)
            recorded = [e for _, e in await history.RedisHistory(client).read()
                      if e.at_ms >= since_ms]
            outcome.violations = checker.check(recorded)
            outcome.stale_flips = sum(1 for e in recorded if isinstance(e, events.BatchCommitted)
                                      and e.generation < e.previous)
            outcome.live_deletions = sum(1 for e in recorded
                                         if isinstance(e, events.TreeDeleted) and e.live)
            outcome.record = RunRecord.from_monitor(monitor, recorded, outcome,
                                                    label=f"{scenario.name} {mode}")
        finally:
            await client.aclose()
    except (ClusterError, RaceError, ControlError, TimeoutError) as e:
        outcome.failures.append(str(e))
    finally:
        stop.set()
        if supervising is not None:
            await supervising
        cluster.stop()
        outcome.restarts = [f"{e.process} ({e.why})" for e in supervisor.restarted]
    _judge(expect, outcome)
    return outcome


def _time_events(outcome: Outcome, monitor: Monitor, origin: float,
                 repair_at: float | None) -> None:
    """The fleet's event times on the timeline's clock, and Unbound's empty answers from its
    cache between the first empty answer and the repair."""
    empty = [d.at - origin for d in monitor.dns if d.empty and d.at >= origin]
    shares = [(t - origin, share) for t, share in monitor.fleet_history() if t >= origin]
    outcome.events = fleet_events(empty, shares, repair_at)
    if not empty:
        return
    until = repair_at if repair_at is not None else float("inf")
    cached = [s.resolver_nodata_from_cache for s in monitor.load
              if empty[0] <= s.at - origin <= until]
    if cached:  # a running total; max() skips a scrape the resolver did not answer (0)
        before = [s.resolver_nodata_from_cache for s in monitor.load
                  if s.at - origin < empty[0]]
        outcome.nodata_from_cache_in_outage = max(cached) - max(before, default=0.0)


def _judge(expect: Expectations, outcome: Outcome) -> None:
    if outcome.failures:
        return
    seen = outcome.empty_answers > 0
    if expect.outage is not None and seen != expect.outage:
        outcome.failures.append(f"expected outage={expect.outage}, DNS polling saw "
                                f"{outcome.empty_answers} empty answer(s)")
    if expect.violations is not None:
        found = sorted({name for name, inv in INVARIANTS.items()
                        if any(v.invariant is inv for v in outcome.violations)})
        if found != sorted(expect.violations):
            outcome.failures.append(f"expected violations {sorted(expect.violations)}, "
                                    f"found {found}")
    if expect.max_failed_requests is not None and (
            outcome.failed_requests > expect.max_failed_requests):
        outcome.failures.append(f"{outcome.failed_requests} failed requests > "
                                f"{expect.max_failed_requests}")
    if expect.max_stale_answers is not None and (
            outcome.stale_answers > expect.max_stale_answers):
        outcome.failures.append(f"{outcome.stale_answers} stale answers > "
                                f"{expect.max_stale_answers}")
    if expect.converge_within_s is not None and outcome.converged_after_s is None:
        outcome.failures.append(f"endpoints did not converge within "
                                f"{expect.converge_within_s} s of the last step")


def format_outcome(scenario: Scenario, outcome: Outcome) -> str:
    converged = ("-" if outcome.converged_after_s is None
                 else f"{outcome.converged_after_s:.1f} s")
    inv = sorted({v.invariant.name for v in outcome.violations})
    lines = [
        f"scenario {scenario.name} in {outcome.mode} mode: "
        + ("PASS" if outcome.ok else "FAIL"),
        f"  requests {outcome.requests}, failed {outcome.failed_requests}, empty DNS answers "
        f"{outcome.empty_answers}, stale answers {outcome.stale_answers}, violations "
        f"{', '.join(inv) or 'none'}, converged {converged}",
    ]
    if outcome.restarts:
        lines.append(f"  restarted by the supervisor: {', '.join(outcome.restarts)}")
    lines += [f"  !! {f}" for f in outcome.failures]
    return "\n".join(lines)
