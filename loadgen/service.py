"""The load generator as a process: /metrics on a free port, load until stopped, a summary."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from loadgen.client import Operation, run_load
from loadgen.launches import run_launches
from loadgen.stats import LoadSummary
from services.core.names import REGIONAL
from services.runtime.service import ServiceContext, observability_app

log = logging.getLogger(__name__)

METRICS_PORT_TRIES = 10
"""Several load generators (``honcho start -c loadgen=3``) take consecutive metrics ports."""


async def start_metrics(ctx: ServiceContext, first_port: int,
                        tries: int = METRICS_PORT_TRIES) -> tuple[web.AppRunner, int]:
    """Serve /metrics and /healthz on the first free port of ``first_port .. +tries-1``."""
    runner = web.AppRunner(observability_app(ctx), access_log=None, handle_signals=False)
    await runner.setup()
    errors = []
    for port in range(first_port, first_port + tries):
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except OSError as e:
            errors.append(f"{port}: {e.strerror}")
            continue
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
        return runner, port
    await runner.cleanup()
    raise OSError(f"no free metrics port in {first_port}-{first_port + tries - 1}: "
                  + "; ".join(errors))


def report(summary: LoadSummary, json_path: Path | None = None, as_json: bool = False) -> None:
    """The end-of-run summary on stdout (text, or JSON), and as JSON in ``json_path``."""
    sys.stdout.write((summary.to_json() if as_json else summary.to_text()) + "\n")
    sys.stdout.flush()
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(summary.to_json() + "\n")


@dataclass(frozen=True)
class ProcessOptions:
    """What ``python -m loadgen`` may change; None means the setting of the same meaning."""

    names: tuple[str, ...] = (REGIONAL,)
    operation: Operation = "get"
    rate: float | None = None
    duration_s: float | None = None
    ramp_s: float | None = None
    max_in_flight: int | None = None
    max_requests: int | None = None
    dns_timeout_s: float = 1.0
    request_timeout_s: float = 2.0
    metrics_port: int | None = None
    """First port to try for /metrics; None: ``metrics_port("loadgen")``; 0: no /metrics."""
    summary_json: Path | None = None
    as_json: bool = False
    launch_rate: float | None = None
    """Instance launches per second sent to ec2_api; None: ``ec2_launch_rate``; 0: none."""
    clients: int | None = None
    """Virtual clients; None: ``load_clients``; 0: one shared stub cache."""
    other_share: float | None = None
    """Share of requests on the FIPS endpoint and the cells; None: ``load_other_share``."""


async def run_process(ctx: ServiceContext, options: ProcessOptions) -> LoadSummary:
    """Serve /metrics, run the load until stopped or its duration is over, print the summary."""
    settings = ctx.settings
    first = options.metrics_port
    if first is None:
        first = settings.metrics_port("loadgen")
    runner = (await start_metrics(ctx, first))[0] if first else None
    ctx.ready = True
    launching = asyncio.create_task(run_launches(settings, ctx.stopping, options.launch_rate))
    try:
        summary = await run_load(
            settings, options.names, rate=options.rate, duration_s=options.duration_s,
            ramp_s=options.ramp_s, max_in_flight=options.max_in_flight,
            max_requests=options.max_requests, operation=options.operation,
            dns_timeout_s=options.dns_timeout_s, request_timeout_s=options.request_timeout_s,
            stop=ctx.stopping, clients=options.clients, other_share=options.other_share,
        )
    finally:
        launching.cancel()
        await asyncio.gather(launching, return_exceptions=True)
        ctx.ready = False
        if runner is not None:
            await runner.cleanup()
    report(summary, options.summary_json, options.as_json)
    return summary


async def serve(ctx: ServiceContext) -> None:
    """The Procfile entry: load as the settings say, until stopped (or load_duration_s)."""
    await run_process(ctx, ProcessOptions())
