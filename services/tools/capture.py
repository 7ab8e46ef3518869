"""Recording runs for the report without changing the code that runs them, and the browser.

:class:`Recorder` is a demo *companion* (``services.tools.demo.run_mode(..., companion=recorder)``):
while the phase runs it keeps a monitor of its own (DNS polling, /metrics) and scrapes the
clients' latency histogram; as the phase ends, while the cluster's Redis is still up, it reads
the history. Its ``record`` is then a :class:`RunRecord` like the one the demo builds itself.

``python -m services.tools.capture`` runs the demo's legacy and safe phases on ports of their
own, writes the report and, with ``--screenshot``, renders it in headless Chromium (how
docs/images/demo-report.png is made).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import aiohttp

from services import config
from services.config import Settings
from services.report.model import LATENCY_METRIC, LatencySample, RunRecord, RunResult
from services.report.monitor import Monitor
from services.report.render import write_report
from services.runtime.ports import free_port, metrics_port_base
from services.runtime.scrape import metrics_urls, scrape
from services.runtime.service import redis_client
from services.store import history
from services.tools.demo import run_mode

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


class Recorder:
    """A companion that records one demo phase (see the module's doc)."""

    def __init__(self, label: str | None = None, latency_every_s: float = 0.5) -> None:
        self.label = label
        self.latency_every_s = latency_every_s
        self.latency: list[LatencySample] = []
        self.record: RunRecord | None = None
        self._settings: Settings | None = None
        self._monitor: Monitor | None = None
        self._task: asyncio.Task[None] | None = None

    def __call__(self, settings: Settings) -> Recorder:
        self._settings = settings
        return self

    async def __aenter__(self) -> Recorder:
        assert self._settings is not None, "call the recorder with the phase's settings first"
        self._monitor = await Monitor(self._settings, out=lambda _: None).__aenter__()
        self._task = asyncio.create_task(self._scrape_latency())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._settings is not None and self._monitor is not None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._monitor.__aexit__(*exc)
        client = redis_client(self._settings)
        try:
            events = [e for _, e in await history.RedisHistory(client).read()]
        finally:
            await client.aclose()
        self.record = RunRecord.from_monitor(self._monitor, events, label=self.label,
                                             latency=self.latency)

    async def _scrape_latency(self) -> None:
        assert self._settings is not None and self._monitor is not None
        url = metrics_urls(self._settings)["loadgen.1"]
        async with aiohttp.ClientSession() as session:
            while True:
                samples = await scrape(session, [url])
                buckets = samples.by(LATENCY_METRIC, "le")
                if buckets:
                    self.latency.append(LatencySample(self._monitor.now(), buckets))
                await asyncio.sleep(self.latency_every_s)

    def finish(self, result: RunResult) -> RunRecord | None:
        """The record with the phase's result attached (None if the phase never got going)."""
        if self.record is not None:
            self.record.result = result
        return self.record


def chromium_command(chromium: str, profile: Path, *args: str) -> list[str]:
    return [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]


def screenshot(html: Path, png: Path, chromium: str = "chromium",
               size: tuple[int, int] = (1400, 2400), timeout_s: float = 120) -> Path:
    """Render ``html`` in headless Chromium and save what a window of ``size`` shows."""
    with tempfile.TemporaryDirectory(prefix="dnsrace-chromium-") as profile:
        subprocess.run(chromium_command(chromium, Path(profile), f"--screenshot={png}",
                                        f"--window-size={size[0]},{size[1]}",
                                        html.resolve().as_uri()),
                       check=True, capture_output=True, timeout=timeout_s)
    return png


def dump_dom(html: Path, chromium: str = "chromium", timeout_s: float = 120) -> str:
    """The page's DOM after Chromium loaded it and its script ran."""
    with tempfile.TemporaryDirectory(prefix="dnsrace-chromium-") as profile:
        done = subprocess.run(chromium_command(chromium, Path(profile), "--dump-dom",
                                               html.resolve().as_uri()),
                              check=True, capture_output=True, timeout=timeout_s, text=True)
    return done.stdout


def own_ports(settings: Settings, root: Path) -> Settings:
    """Settings on free ports of their own, so that a cluster already running is not hit."""
    return settings.replace(redis_port=free_port(), dns_port=free_port(),
                            control_port=free_port(), lb_port=free_port(),
                            metrics_port_base=metrics_port_base(),
                            lb_network="127.0.22", state_dir=str(root / "state"))


async def record_demo(settings: Settings, workdir: Path, rate: float) -> list[RunRecord]:
    """The demo's legacy and safe phases, each recorded by a Recorder."""
    records = []
    for mode in ("legacy", "safe"):
        recorder = Recorder(mode)
        result = await run_mode(settings, mode, workdir, rate, companion=recorder)
        record = recorder.finish(result)
        if record is not None:
            records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tools.capture",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rate", type=float, default=150.0, help="requests/s of load")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report directory")
    parser.add_argument("--screenshot", type=Path, help="also render the report to this PNG")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="dnsrace-report-"))
    settings = own_ports(config.load(), workdir)
    records = asyncio.run(record_demo(settings, workdir, args.rate))
    path = write_report("demo", records, args.out)
    print(f"report: {path}")
    if args.screenshot:
        chromium = shutil.which("chromium")
        if chromium is None:
            print("chromium is not installed (apt-get install chromium): no screenshot")
            return 1
        print(f"screenshot: {screenshot(path, args.screenshot, chromium)}")
    return 0 if len(records) == 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
