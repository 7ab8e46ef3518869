"""One legacy race on a real cluster, observed every way at once, shared by several test files.

Prometheus (when installed) scrapes the cluster with the generated config from before the
cluster starts. While the demo's legacy phase (``services.tools.demo.run_mode``) runs, an observer
waits for every process to be healthy, keeps each process's ``/metrics``, runs ``promtool
check metrics`` on each, runs ``dnsrace watch --once``, waits for every Prometheus target to
be up, and keeps ``dnsrace watch`` frames of the moments that matter (a fault active, the
name empty, clients failing). Afterwards every dashboard query is evaluated over the run
through Prometheus's HTTP API, and the history is read back from Redis's append-only file.

The run happens once per test session, whichever test asks first (about 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from dashboards import dashboard
from loadgen.resolver import StubResolver
from services.config import Settings
from services.core import names
from services.core.events import Event
from services.runtime.cluster import health_url, procfile_commands
from services.runtime.ports import free_port
from services.runtime.prometheus import PrometheusServer, start_prometheus
from services.runtime.redis_server import EmbeddedRedis
from services.runtime.scrape import metrics_urls
from services.store import history
from services.tools import watch
from services.tools.demo import ModeResult, run_mode
from tests.conftest import cluster_settings

RATE = 150.0
CLIENTS = 200
"""A fleet of virtual clients (issue 19), so the dashboard's fleet panel has data."""
Series = list[dict[str, Any]]


@dataclass
class Observed:
    settings: Settings
    result: ModeResult | None = None
    events: list[Event] = field(default_factory=list)
    started_unix: float = 0.0
    ended_unix: float = 0.0
    wall_s: float = 0.0
    healthy_unix: float = 0.0
    metrics_text: dict[str, str] = field(default_factory=dict)
    promtool: dict[str, tuple[int, str]] | None = None
    """process -> (exit code, output); None when promtool is not installed."""
    prometheus: bool = False
    up: dict[str, float] = field(default_factory=dict)
    up_after_s: float | None = None
    """Seconds from every process healthy to every Prometheus target up."""
    targets: list[dict[str, Any]] = field(default_factory=list)
    panels: dict[tuple[str, str], Series] = field(default_factory=dict)
    annotation: Series = field(default_factory=list)
    alerts: Series = field(default_factory=list)
    """``ALERTS{alertstate="firing"}`` over the race (dashboards/alerts.yml's rules)."""
    once_rc: int | None = None
    once_output: str = ""
    live_rc: int | None = None
    live_output: str = ""
    """``dnsrace watch --seconds 1``: the frames of one second of the live view."""
    frames: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


async def _wait_healthy(session: aiohttp.ClientSession, settings: Settings,
                        timeout_s: float) -> None:
    urls = [u for name in procfile_commands() if (u := health_url(name, settings))]
    deadline = time.monotonic() + timeout_s
    pending = set(urls)
    while pending:
        for url in sorted(pending):
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=0.5)) as r:
                    if r.status == 200:
                        pending.discard(url)
            except (aiohttp.ClientError, TimeoutError):
                pass
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not healthy within {timeout_s:.0f} s: {sorted(pending)}")
        await asyncio.sleep(0.1)


async def _wait_answering(settings: Settings, timeout_s: float) -> None:
    """Wait until the regional name has addresses (the first plan is applied)."""
    resolver = StubResolver(settings.dns_host, settings.dns_port, timeout_s=0.5, cache=False)
    deadline = time.monotonic() + timeout_s
    try:
        while not (await resolver.query(names.REGIONAL)).addresses:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{names.REGIONAL} had no address within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)
    finally:
        await resolver.aclose()


async def _promtool(binary: str, text: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        binary, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate(text.encode())
    return process.returncode or 0, out.decode()


async def _wait_up(server: PrometheusServer, expected: int, timeout_s: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        up = await asyncio.to_thread(server.api.up)
        if len(up) == expected and all(v == 1.0 for v in up.values()):
            return up
        if time.monotonic() > deadline:
            raise TimeoutError(f"Prometheus targets not all up within {timeout_s:.0f} s: {up}")
        await asyncio.sleep(0.2)


async def _frames(obs: Observed, session: aiohttp.ClientSession, done: asyncio.Event) -> None:
    """Keep the first watch frame of each moment that tells the story, until the run ends."""
    settings = obs.settings
    urls = metrics_urls(settings)
    resolver = StubResolver(settings.dns_host, settings.dns_port, timeout_s=0.5, cache=False)
    moments = {
        "healthy": lambda f: f.probe is not None and f.probe.outcome == "ok"
        and f.failure_ratio == 0.0,
        "fault": lambda f: bool(f.faults),
        "empty": lambda f: f.probe is not None and f.probe.outcome == "dns_nodata",
        # Failing because of the race: after the empty answer (at start-up, before the first
        # plan, clients fail for other reasons: NXDOMAIN, SERVFAIL).
        "failing": lambda f: "empty" in obs.frames and (f.failure_ratio or 0.0) >= 0.9,
        "rejecting": lambda f: any(e.rejected_per_s > 0 for e in f.enactors),
    }
    started = time.monotonic()
    kept: list[watch.Snapshot] = []
    try:
        while not done.is_set() and len(obs.frames) < len(moments):
            cur = await watch.take_snapshot(session, urls, resolver)
            kept.append(cur)
            prev = next((s for s in reversed(kept) if cur.at - s.at >= watch.WINDOW_S), None)
            frame = watch.build_frame(prev, cur, started)
            for moment, seen in moments.items():
                if moment not in obs.frames and prev is not None and seen(frame):
                    obs.frames[moment] = watch.render(frame)
            await asyncio.sleep(watch.REFRESH_S)
    finally:
        await resolver.aclose()


async def _observe(obs: Observed, server: PrometheusServer | None, done: asyncio.Event) -> None:
    settings = obs.settings
    async with aiohttp.ClientSession() as session:
        await _wait_healthy(session, settings, 40.0)
        obs.healthy_unix = time.time()
        for name, url in metrics_urls(settings).items():
            async with session.get(url) as response:
                obs.metrics_text[name.split(".")[0]] = await response.text()
        promtool = shutil.which("promtool")
        if promtool is not None:
            obs.promtool = {name: await _promtool(promtool, text)
                            for name, text in obs.metrics_text.items()}
        await _wait_answering(settings, 10.0)
        args = argparse.Namespace(once=True, seconds=0.0, refresh=watch.REFRESH_S,
                                  window=watch.WINDOW_S, loadgen=1)
        buffer = io.StringIO()
        obs.once_rc = await asyncio.to_thread(watch.run, args, settings, buffer)
        obs.once_output = buffer.getvalue()
        live = argparse.Namespace(once=False, seconds=1.0, refresh=watch.REFRESH_S,
                                  window=watch.WINDOW_S, loadgen=1)
        buffer = io.StringIO()
        obs.live_rc = await asyncio.to_thread(watch.run, live, settings, buffer)
        obs.live_output = buffer.getvalue()
        if server is not None:
            healthy = time.monotonic()
            obs.up = await _wait_up(server, len(metrics_urls(settings)), 20.0)
            obs.up_after_s = time.monotonic() - healthy
            data = await asyncio.to_thread(server.api.get, "/api/v1/targets")
            obs.targets = list(data["activeTargets"])
        await _frames(obs, session, done)


def _evaluate(obs: Observed, server: PrometheusServer) -> None:
    model = json.loads(Path(dashboard.__file__).with_name("grafana").joinpath(
        "dashboards", "dnsrace.json").read_text())
    start, end = obs.started_unix, obs.ended_unix
    network = dashboard.panel_needs()  # issue 15's processes: test_network_dashboard.py
    for title, ref, expr in dashboard.panel_queries(model):
        if title not in network:
            obs.panels[(title, ref)] = server.api.query_range(dashboard.expand(expr), start, end)
    annotation = next(a for a in model["annotations"]["list"] if a.get("expr"))
    obs.annotation = server.api.query_range(dashboard.expand(annotation["expr"]), start, end)
    obs.alerts = server.api.query_range('ALERTS{alertstate="firing"}', start, end)


async def _read_history(obs: Observed, root: Path) -> None:
    # The cluster is gone; its Redis kept the history in its append-only file.
    redis = EmbeddedRedis(root / "legacy" / "redis", port=obs.settings.redis_port).start()
    try:
        client = aioredis.Redis.from_url(redis.url, decode_responses=True)
        obs.events = [e for _, e in await history.RedisHistory(client).read()]
        await client.aclose()
    finally:
        redis.stop()


async def _run(obs: Observed, root: Path, server: PrometheusServer | None) -> None:
    done = asyncio.Event()
    observer = asyncio.create_task(_observe(obs, server, done))
    try:
        obs.result = await run_mode(obs.settings, "legacy", root, rate=RATE)
    finally:
        done.set()
        try:
            await asyncio.wait_for(observer, 10.0)
        except Exception as e:  # the tests report what the observer could not do
            obs.problems.append(f"observer: {type(e).__name__}: {e}")


def run_observed(root: Path) -> Observed:
    started = time.monotonic()
    obs = Observed(cluster_settings(root, load_clients=CLIENTS))
    server = None
    if shutil.which("prometheus") is not None:
        server = start_prometheus(obs.settings, port=free_port(), workdir=root / "prometheus")
        obs.prometheus = True
    try:
        obs.started_unix = time.time()
        asyncio.run(_run(obs, root, server))
        obs.ended_unix = time.time()
        if server is not None:
            _evaluate(obs, server)
    finally:
        if server is not None:
            server.stop()
    asyncio.run(_read_history(obs, root))
    obs.wall_s = time.monotonic() - started
    return obs


_RUNS: dict[str, Observed] = {}


def observed_race(factory: pytest.TempPathFactory) -> Observed:
    """The session's one observed race (run now if no test has asked for it yet)."""
    if "legacy" not in _RUNS:
        _RUNS["legacy"] = run_observed(factory.mktemp("observed-race"))
    return _RUNS["legacy"]
