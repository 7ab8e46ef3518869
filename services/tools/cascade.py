"""``dnsrace cascade --stage dwfm``: the race, the empty name, and what it did to EC2's DWFM.

Brings the cluster up with the DWFM hosts, ec2_api, launch load and DNS clients; runs the real
race; lets the regional name stay empty until most leases are lost; repairs DNS as the
operators did; then watches for ``collapse_watch_s`` whether the leases come back by themselves
(with ``queue_throttle`` they do) and, if not, applies the operators' procedure (throttle
incoming work, restart every DWFM host), in any mode. A live line a
second, a summary, or with ``--json`` one object.

Stages: each :class:`Stage` names the processes it needs, reads its values into every sample
and adds its figures to the summary. ``dwfm`` is the first; part 2's Network Manager and NLB
add theirs beside it (:data:`STAGES`). The figures come from :mod:`services.core.cascade`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.config import Settings
from services.control.client import ControlClient
from services.core import cascade, checker, events, names
from services.core.invariants import Invariant
from services.core.launch import LaunchOutcome
from services.report.cascade import write_cascade_report
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import Cluster, cluster_env
from services.runtime.scrape import Samples
from services.runtime.service import redis_client
from services.store import history
from services.store.plans import PlanStore
from services.store.zone import ZoneStore
from services.tools import ec2, operator
from services.tools.cascade_args import STAGE_NAMES
from services.tools.cascade_run import CascadeError, Run, Stage, on_cluster
from services.tools.cascade_summary import format_summary
from services.tools.race import run_race

BASE_PROCESSES = (
    "redis",
    "planner",
    "enactor_az1",
    "enactor_az2",
    "enactor_az4",
    "dns",
    "endpoints",
    "control",
    "loadgen",
)
DNS_LOAD_RATE = 50.0
"""DNS clients' requests per second: enough to see the outage, light on the 2-core machine."""


@dataclass
class DwfmStage:
    settings: Settings
    name: str = "dwfm"

    @property
    def processes(self) -> tuple[str, ...]:
        return (*(f"dwfm_{i + 1}" for i in range(self.settings.dwfm_hosts)), "ec2_api")

    @property
    def total(self) -> int:
        return self.settings.dwfm_hosts * self.settings.dwfm_droplets

    @property
    def healthy_goodput(self) -> float:
        """Leases per second the workers establish when nothing is in their way (W/S each)."""
        s = self.settings
        return s.dwfm_hosts * s.dwfm_workers / (s.dwfm_work_s + 3.5 * s.dwfm_instance_work_s)

    def read(self, samples: Samples) -> dict[str, float]:
        values = {
            "leases_held": samples.sum("dnsrace_dwfm_leases_held"),
            "queue_depth": samples.sum("dnsrace_dwfm_queue_depth"),
            "goodput": samples.sum("dnsrace_dwfm_goodput"),
            "work_void": samples.sum("dnsrace_dwfm_work_expired_total"),
            "work_started_late": samples.sum("dnsrace_dwfm_work_started_late_total"),
            "work_dropped": samples.sum("dnsrace_dwfm_work_total", outcome="dropped"),
            "dynamodb_failures": samples.sum("dnsrace_dwfm_work_total", outcome="failed")
            + samples.sum("dnsrace_dwfm_renewals_total", outcome="failed"),
        }
        for outcome in LaunchOutcome:
            values[f"launches_{outcome.value}"] = samples.sum(
                "dnsrace_ec2_launches_total", outcome=outcome.value
            )
        return values

    def ready(self, sample: cascade.Sample) -> bool:
        return sample.get("leases_held") >= self.total

    def live(self, sample: cascade.Sample) -> str:
        ok = sample.get("launches_ok")
        ice = sample.get("launches_insufficient_capacity")
        rle = sample.get("launches_request_limit_exceeded")
        return (
            f"leases {sample.get('leases_held'):.0f}/{self.total}  queue "
            f"{sample.get('queue_depth'):.0f}  goodput {sample.get('goodput'):.1f}/s  "
            f"void {sample.get('work_void'):.0f}  launches ok {ok:.0f} "
            f"insufficient {ice:.0f} limited {rle:.0f}"
        )

    def summary(self, timeline: cascade.Timeline) -> dict[str, object]:
        return cascade.dwfm_summary(
            timeline, self.total, self.healthy_goodput, settle_s=self.settings.negative_ttl_s + 2.0
        )


STAGES: dict[str, Callable[[Settings], Stage]] = {"dwfm": DwfmStage}
assert tuple(STAGES) == STAGE_NAMES


async def operators_procedure(run: Run, sink: history.RedisHistory) -> None:
    """What engineers did at 4:14 AM PDT: throttle incoming work, restart the DWFM hosts."""
    s = run.settings
    rate = round(0.5 * s.dwfm_workers / (s.dwfm_work_s + 3.5 * s.dwfm_instance_work_s), 1)
    for host in range(1, s.dwfm_hosts + 1):
        await ec2.post(s, host, "/ec2/throttle", {"rate": rate})
    await run.act(sink, "throttle", "every DWFM host", f"{rate:g} items/s")
    for host in range(1, s.dwfm_hosts + 1):
        answer = await ec2.post(s, host, "/ec2/restart", {})
        await run.act(
            sink,
            "restart",
            f"dwfm_{host}",
            f"{answer['lost']} items lost, {answer['queued']} queued again "
            "(the rest as the throttle admits them)",
        )


async def script(run: Run, mode: str, collapse_watch_s: float) -> None:
    """The cascade's story, on a cluster whose processes are healthy."""
    s = run.settings
    client = redis_client(s, retries=3)
    sink = history.RedisHistory(client, source="cascade", clock=WALL_CLOCK)
    try:
        ready = await run.until(
            lambda x: x.dns_answers and all(t.ready(x) for t in run.stages),
            30,
            "the name answering and every lease held",
        )
        if ready is None:
            raise CascadeError("the cluster did not become ready (see the logs)")
        run.timeline.mark("ready", ready)
        await asyncio.sleep(3.0)  # a window of healthy launches, to compare with
        run.timeline.mark("race", run.now())
        run.note("the race: three enactors, one stalled (as on 19 October 2025)")
        report = await run_race(
            ControlClient.for_settings(s), sink, s.cleanup_age, s.plan_interval_s, observe_s=0.5
        )
        outage_wait = s.ttl_s + s.negative_ttl_s + s.lease_ttl_s + 10
        quiet_wait = s.ttl_s + s.lease_ttl_s + 2  # what an empty name would have cost by then
        if report.emptied:
            run.note(f"{names.REGIONAL} is empty; waiting for the leases to run out")
            await run.until(lambda x: x.get("leases_held") == 0, outage_wait, "every lease lost")
            await asyncio.sleep(3.0)  # launches against a fleet without leases
        else:
            run.note(
                f"the name kept its addresses; watching {quiet_wait:.0f} s, time enough for "
                "an empty name to cost every lease"
            )
            await asyncio.sleep(quiet_wait)
        if report.emptied:
            actions = await operator.repair(
                ZoneStore(client, clock=WALL_CLOCK), PlanStore(client), names.endpoints(s.cells)
            )
            repaired = sum(a.tree_was_missing for a in actions)
            await run.act(sink, "dns_repair", names.REGIONAL, f"{repaired} endpoint(s) restored")
        else:
            run.timeline.mark("dns_repaired", run.now())  # nothing to repair
        total = stage_total(run)
        def recovered(x: cascade.Sample) -> bool:
            return x.get("leases_held") >= cascade.RECOVERED_SHARE * total

        if report.emptied:
            run.note(f"watching {collapse_watch_s:.0f} s; the operators act if the leases are "
                     "not back by then")
            if await run.until(recovered, collapse_watch_s, "leases back", watch=True) is None:
                await operators_procedure(run, sink)  # in any mode: nothing else brought them
        await run.until(recovered, 60, ">= 95 % of the leases held")
        await asyncio.sleep(3.0)  # a window of launches after recovery
        run.ec2_status = [asdict(h) for h in await ec2.collect(s)]
        collapse = cascade.longest_collapse(run.timeline, DwfmStage(s).healthy_goodput, total)
        if collapse is not None and collapse[1] >= cascade.COLLAPSE_MIN_S:
            at_ms = WALL_CLOCK.now_ms() - int((run.now() - collapse[0]) * 1000)
            await sink.record(events.CollapseSeen(since_ms=at_ms, lasted_s=collapse[1]))
        # What 'dnsrace check' says of this run's history (I1-I3 and C1).
        run.violations = checker.check([e for _, e in await sink.read()])
    finally:
        await client.aclose()


def stage_total(run: Run) -> int:
    return run.stages[0].total


async def run_cascade(
    settings: Settings,
    stage_names: tuple[str, ...],
    mode: str,
    collapse_watch_s: float,
    workdir: Path,
    out: Callable[[str], None],
    report_dir: Path | None = None,
) -> dict[str, Any]:
    """Start the cluster, run the cascade, stop the cluster; the summary as a dict (and the
    HTML report in ``report_dir``, its path under ``report``)."""
    settings = settings.replace(
        mode=mode, state_dir=str(workdir / "state"), load_rate=DNS_LOAD_RATE, load_duration_s=0.0
    )
    stages = [STAGES[name](settings) for name in stage_names]
    processes = tuple(
        dict.fromkeys(BASE_PROCESSES + tuple(p for stage in stages for p in stage.processes))
    )
    cluster = Cluster(settings, cluster_env(settings), workdir / "logs", only=processes)
    run = Run(settings, stages, out)
    problems = await on_cluster(run, cluster, 30.0, lambda: script(run, mode, collapse_watch_s))
    summary: dict[str, Any] = {
        "mode": mode,
        "protections": sorted(settings.active_protections),
        "stages": list(stage_names),
    }
    for stage in stages:
        summary.update(stage.summary(run.timeline))
    summary["operator_actions"] = [
        {"at_s": a.t_s, "action": a.action, "target": a.target, "detail": a.detail}
        for a in run.timeline.actions
    ]
    summary["violations"] = {
        inv.value: sum(v.invariant is inv for v in run.violations) for inv in Invariant
    }
    summary["c1"] = [v.summary for v in run.violations if v.invariant is Invariant.C1]
    summary["ec2_status"] = run.ec2_status
    summary["marks_s"] = run.timeline.marks
    summary["problems"] = problems
    summary["waits_missed"] = run.waits_missed
    summary["wall_s"] = round(time.monotonic() - run.started, 1)
    if report_dir is not None and run.timeline.samples:
        summary["report"] = str(write_cascade_report(run.timeline, summary, report_dir))
    return summary


def cascade_command(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 <= args.collapse_watch_s <= 600:
        raise ec2.Ec2UsageError("--collapse-watch takes 0 to 600 seconds, e.g. 30")
    workdir = Path(tempfile.mkdtemp(prefix="dnsrace-cascade-"))

    def out(line: str) -> None:  # with --json, stdout is the one object; the live lines go aside
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    summary = asyncio.run(
        run_cascade(
            settings,
            tuple(dict.fromkeys(args.stage)),
            args.mode,
            args.collapse_watch_s,
            workdir,
            out,
            args.report_dir,
        )
    )
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 1 if summary["problems"] else 0
