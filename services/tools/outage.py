"""``dnsrace outage``: the whole incident in one run, on the cascade's machinery.

The cluster (the DNS race's processes, DWFM and ec2_api, Network Manager, the instances of each
AZ, the NLB and its service clients) comes up; :func:`services.tools.cascade.script` runs part 1
(the race, the empty name, leases lost, the DNS repair, in legacy the collapse and the
operators' throttle and restarts) until the leases are back. Then the launches refused all that
time come back (the launch load retries them as an auto-scaling group does,
``ec2_launch_retry_rate``): Network Manager falls behind, instances run without connectivity,
the NLB's health checks fail them, and failover takes AZs out of the NLB's name. In legacy the
operators turn failover off (``dnsrace nlb failover off``, 9:36 AM on the day) and on again once
Network Manager caught up. A live line a second, a closing timeline beside AWS's, an HTML report
with a section per stage, or with ``--json`` one object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from loadgen.outcome import Outcome
from services.config import Settings
from services.core import cascade, checker
from services.core import outage as model
from services.core.invariants import Invariant, Violation
from services.core.names import AZS
from services.report.outage import write_outage_report
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import OUTAGE_PROCESSES, Cluster, cluster_env
from services.runtime.scrape import Samples
from services.runtime.service import redis_client
from services.store import history
from services.tools import ec2
from services.tools.cascade import BASE_PROCESSES, DNS_LOAD_RATE, DwfmStage, script
from services.tools.cascade_run import CascadeError, Run, on_cluster
from services.tools.cascade_run import Stage as CascadeStage

SIZING: dict[str, float] = {
    "ec2_launch_rate": 2.0,
    "netmgr_rate_per_s": 5.0,
    "ec2_launch_retry_rate": 20.0,
    "ec2_netmgr_backlog_limit": 25,
    "nlb_failover_threshold": 0.8,
    "nlb_check_interval_s": 0.5,
}
"""The run's scale. Steady launches at 2/s leave Network Manager (5/s) room to drain a backlog
within the run; pending launches retried at 20/s make the surge; under queue_throttle, ec2_api
admits launches while the backlog is at most 5 s of propagation (25, as
:attr:`PropagationQueue.admission_limit` with ``max_wait_s`` 5). What the health checker needs
to fail a target (two failed checks, 64 targets a round) takes several seconds, so only a
backlog longer than that puts instances without connectivity out of service (a round every
0.5 s keeps that shorter than the backlog on a loaded machine). Failover takes
an AZ out of the NLB's name when fewer than 80 % of its targets are in service: the surge is
about as large as the fleet launched before the race (both grow with the launch rate), so a
half-unhealthy threshold would need an outage several times longer than the run's."""
NLB = "api"


@dataclass
class NetworkStage:
    settings: Settings
    name: str = "network"

    @property
    def processes(self) -> tuple[str, ...]:
        return ("netmgr", *(f"instances_{az.removeprefix('use1-')}" for az in AZS))

    @property
    def total(self) -> int:
        return 0

    def read(self, samples: Samples) -> dict[str, float]:
        values = {
            "backlog": samples.sum("dnsrace_netmgr_backlog"),
            "oldest_wait_s": samples.sum("dnsrace_netmgr_oldest_wait_seconds"),
            "without_connectivity": samples.sum("dnsrace_instances_without_connectivity"),
            "launches_pending": samples.sum("dnsrace_ec2_launches_pending"),
        }
        answered = {labels for n, labels in samples.values if n == "dnsrace_instances_connected"}
        if len(answered) == len(AZS):  # every AZ's instances answered this scrape
            values["connected"] = samples.sum("dnsrace_instances_connected")
        return values

    def ready(self, sample: cascade.Sample) -> bool:
        return True

    def live(self, sample: cascade.Sample) -> str:
        return (f"pending {sample.get('launches_pending'):.0f}  netmgr backlog "
                f"{sample.get('backlog'):.0f}  no connectivity "
                f"{sample.get('without_connectivity'):.0f}")

    def summary(self, timeline: cascade.Timeline) -> dict[str, object]:
        s = timeline.samples
        return {
            "netmgr_max_backlog": max((x.get("backlog") for x in s), default=0.0),
            "max_launches_pending": max((x.get("launches_pending") for x in s), default=0.0),
            "max_in_service_without_connectivity": max(
                (model.in_service_without_connectivity(x) for x in s), default=0.0),
        }


@dataclass
class NlbStage:
    settings: Settings
    name: str = "nlb"

    @property
    def processes(self) -> tuple[str, ...]:
        return ("nlb", "service_load")

    @property
    def total(self) -> int:
        return 0

    def read(self, samples: Samples) -> dict[str, float]:
        total = sum(v for (n, _), v in samples.values.items()
                    if n == "dnsrace_service_requests_total")
        ok = samples.sum("dnsrace_service_requests_total", outcome=Outcome.OK.value)
        values = {"service_ok": ok, "service_failed": total - ok}
        if any(n == "dnsrace_nlb_name_az_records" for n, _ in samples.values):
            values["az_records"] = samples.sum("dnsrace_nlb_name_az_records")
            values["healthy"] = samples.sum("dnsrace_nlb_targets_healthy")
            values["targets_failed"] = samples.sum("dnsrace_nlb_targets_failed_total")
            for az in AZS:
                values[f"healthy_{az}"] = samples.sum("dnsrace_nlb_targets_healthy", az=az)
        return values

    def ready(self, sample: cascade.Sample) -> bool:
        return sample.get("az_records") == len(AZS) and all(
            sample.get(f"healthy_{az}") >= 1 for az in AZS)

    def live(self, sample: cascade.Sample) -> str:
        healthy = "/".join(f"{sample.get(f'healthy_{az}'):.0f}" for az in AZS)
        return (f"nlb AZs {sample.get('az_records'):.0f}/3 healthy {healthy}  service ok "
                f"{sample.get('service_ok'):.0f} failed {sample.get('service_failed'):.0f}")

    def summary(self, timeline: cascade.Timeline) -> dict[str, object]:
        ready = timeline.marks.get("ready", 0.0)
        records = [x.get("az_records") for x in timeline.between(ready, None)
                   if "az_records" in x.values]
        return {"nlb_min_az_records": int(min(records)) if records else None}


async def nlb_failover(run: Run, enabled: bool) -> None:
    """The operators' switch (as ``dnsrace nlb failover off|on``); the nlb records the action
    in the history itself."""
    url = f"http://127.0.0.1:{run.settings.metrics_port('nlb')}/nlb/failover"
    async with aiohttp.ClientSession() as session, session.post(
            url, json={"enabled": enabled}, timeout=aiohttp.ClientTimeout(total=5)) as r:
        if r.status != 200:
            raise CascadeError(f"the nlb refused the failover switch: {await r.text()}")
    state = "on" if enabled else "off"
    run.timeline.actions.append(cascade.Action(run.now(), "nlb_failover", NLB, state))
    run.timeline.mark("operators", run.now())
    run.note(f"operators: dnsrace nlb failover {state}")


def service_ok_now(run: Run) -> bool:
    """The service's calls of the last second succeeded (>= 99 %) and its name is whole."""
    rows = run.timeline.samples[-2:]
    if len(rows) < 2 or rows[-1].get("az_records") != len(AZS):
        return False
    return model.service_ok_shares(rows)[0][1] >= model.SERVICE_OK_SHARE


async def nlb_operators(run: Run, failover_watch_s: float) -> bool:
    """Legacy: once failover has taken two of the NLB's AZs out of its name, the operators
    watch ``failover_watch_s`` and turn automatic failover off. True once they did. They watch
    from the DNS repair on (a blip of failover among the first few targets is not the day's)."""
    while "dns_repaired" not in run.timeline.marks:
        await asyncio.sleep(0.2)
    taken = await run.until(lambda x: "az_records" in x.values and x.get("az_records") <= 1,
                            600, "failover taking two AZs out of the NLB's name")
    if taken is None:
        return False
    run.note(f"watching {failover_watch_s:.0f} s before the operators turn failover off")
    await asyncio.sleep(failover_watch_s)
    await nlb_failover(run, False)
    return True


async def outage_script(run: Run, mode: str, collapse_watch_s: float,
                        failover_watch_s: float) -> list[Violation]:
    """The incident; every violation of I1-I3 and C1-C3 the history holds at the end."""
    operators = asyncio.create_task(nlb_operators(run, failover_watch_s)) \
        if mode == "legacy" else None
    try:
        await script(run, mode, collapse_watch_s)  # part 1: race ... leases back
        run.note("leases are back; waiting for Network Manager to catch up")
        turned_off = False
        if operators is not None:
            with contextlib.suppress(TimeoutError):
                turned_off = await asyncio.wait_for(asyncio.shield(operators), 60)
        await run.until(lambda x: x.get("backlog") <= 1 and x.get("without_connectivity") == 0
                        and x.get("launches_pending") == 0, 150, "Network Manager caught up")
        if turned_off:
            await nlb_failover(run, True)
    finally:
        if operators is not None and not operators.done():
            operators.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await operators
    await run.until(lambda x: service_ok_now(run), 45, "the service answering again")
    await asyncio.sleep(1.0)  # a last window of calls after the recovery
    client = redis_client(run.settings, retries=3)
    try:
        sink = history.RedisHistory(client, source="outage", clock=WALL_CLOCK)
        events = [e for _, e in await sink.read()]
    finally:
        await client.aclose()
    return checker.check(events)  # I1-I3, C1, and C2/C3 (services.core.cascade_invariants)


def invariants(violations: list[Violation]) -> dict[str, dict[str, Any]]:
    out = {}
    for inv in (Invariant.C1, Invariant.C2, Invariant.C3):
        found = [v for v in violations if v.invariant is inv]
        out[inv.value] = {"held": not found, "violations": len(found),
                          "witness": found[0].summary if found else None}
    return out


async def run_outage(settings: Settings, mode: str, collapse_watch_s: float,
                     failover_watch_s: float, workdir: Path, out: Callable[[str], None],
                     report_dir: Path | None = None) -> dict[str, Any]:
    """Start the cluster, run the incident, stop the cluster; the summary as a dict."""
    settings = settings.replace(
        mode=mode, state_dir=str(workdir / "state"), load_rate=DNS_LOAD_RATE, load_duration_s=0.0,
        **SIZING)
    dwfm = DwfmStage(settings)
    stages: list[CascadeStage] = [dwfm, NetworkStage(settings), NlbStage(settings)]
    processes = tuple(dict.fromkeys(
        BASE_PROCESSES + tuple(p for stage in stages for p in stage.processes)))
    assert set(OUTAGE_PROCESSES) <= set(processes)
    cluster = Cluster(settings, cluster_env(settings), workdir / "logs", only=processes)
    urls = tuple(f"http://127.0.0.1:{settings.metrics_port(role, i)}/metrics"
                 for role, i in [("netmgr", 0), ("nlb", 0), ("service_load", 0),
                                 *(("instances", i) for i in range(len(AZS)))])
    run = Run(settings, stages, out, extra_urls=urls)
    violations: list[Violation] = []

    async def incident() -> None:
        violations.extend(await outage_script(run, mode, collapse_watch_s, failover_watch_s))

    problems = await on_cluster(run, cluster, 40.0, incident)
    return summarize(settings, mode, run, dwfm, violations, problems, report_dir)


def summarize(settings: Settings, mode: str, run: Run, dwfm: DwfmStage,
              violations: list[Violation], problems: list[str],
              report_dir: Path | None) -> dict[str, Any]:
    stages = run.stages
    facts = model.RunFacts(dwfm.total, dwfm.healthy_goodput, settings.ec2_launch_rate,
                           settings.netmgr_rate_per_s)
    found = model.find_stages(run.timeline, facts) if run.timeline.samples else []
    happened = sorted((s for s in found if s.happened), key=lambda s: s.onset_s or 0.0)
    summary: dict[str, Any] = {
        "mode": mode,
        "protections": sorted(settings.active_protections),
        "stages": [{"name": s.key, "onset_s": s.onset_s, "end_s": s.end_s} for s in happened],
        "stages_missing": [s.key for s in found if not s.happened],
        "in_aws_order": model.in_aws_order(found),
        "order_resolution_s": model.ORDER_RESOLUTION_S,
        "aws_timeline": [{"name": a.key, "title": a.title, "aws_onset_pdt": a.aws_onset,
                          "aws_end_pdt": a.aws_end} for a in model.STAGES],
        "invariants": invariants(violations),
        "violations": {inv.value: sum(v.invariant is inv for v in violations)
                       for inv in Invariant},
        "service_success_ratio_after_repair": model.success_ratio_after(
            run.timeline, run.timeline.marks.get("dns_repaired")),
        "service_calls_failed_after_repair": model.failed_after(
            run.timeline, run.timeline.marks.get("dns_repaired")),
        "sizing": SIZING,
        "launch_surge_source": "launches refused during the outage, retried by the launch load "
                               f"as an auto-scaling group at up to "
                               f"{settings.ec2_launch_retry_rate:g}/s (not injected)",
    }
    for stage in stages:
        summary.update(stage.summary(run.timeline))
    summary["operator_actions"] = [
        {"at_s": a.t_s, "action": a.action, "target": a.target, "detail": a.detail}
        for a in run.timeline.actions]
    summary["marks_s"] = run.timeline.marks
    summary["problems"] = problems
    summary["waits_missed"] = run.waits_missed
    summary["wall_s"] = round(time.monotonic() - run.started, 1)
    summary["timeline"] = model.format_timeline(found) if found else ""
    if report_dir is not None and run.timeline.samples:
        summary["report"] = str(write_outage_report(run.timeline, found, summary, report_dir))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    inv = ", ".join(f"{k} {'held' if v['held'] else 'violated'}"
                    for k, v in summary["invariants"].items())
    lines = [
        f"dnsrace outage ({summary['mode']}, protections "
        f"{', '.join(summary['protections']) or 'none'}): {summary['wall_s']} s",
        summary["timeline"],
        f"stages in AWS's order: {'yes' if summary['in_aws_order'] else 'no'}"
        + (f" (missing: {', '.join(summary['stages_missing'])})"
           if summary["stages_missing"] else ""),
        f"invariants: {inv}",
        f"NLB name's fewest AZ records: {summary.get('nlb_min_az_records')}",
        f"service success after the DNS repair: {summary['service_success_ratio_after_repair']}",
    ]
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    lines += [f"waited in vain for {w}" for w in summary["waits_missed"]]
    lines += [f"problem: {p}" for p in summary["problems"]]
    return "\n".join(lines)


def outage_command(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 <= args.collapse_watch_s <= 600 or not 0 <= args.failover_watch_s <= 600:
        raise ec2.Ec2UsageError("--collapse-watch and --failover-watch take 0 to 600 seconds")
    workdir = Path(tempfile.mkdtemp(prefix="dnsrace-outage-"))

    def out(line: str) -> None:  # with --json, stdout is the one object; live lines go aside
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    summary = asyncio.run(run_outage(settings, args.mode, args.collapse_watch_s,
                                     args.failover_watch_s, workdir, out, args.report_dir))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 1 if summary["problems"] else 0
