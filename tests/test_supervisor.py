"""``dnsrace up`` under its own supervisor: started as a user starts it (the venv's
``bin/dnsrace``, no activated venv), every child killed with SIGKILL in turn, crash faults through
the fault API, Ctrl-C. The restart decisions are tested without processes first."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.config import Settings
from services.core import events
from services.core.backoff import RetryBackoff
from services.core.faults import FaultType
from services.runtime.cluster import Cluster, cluster_env, procfile_commands
from services.runtime.restarts import Restarts, crash_targets
from services.store import history
from tests.conftest import cluster_settings

PROCESSES = ["redis", "planner", "enactor_az1", "enactor_az2", "enactor_az4", "dns",
             "endpoints", "control", "loadgen"]


def test_a_crash_restarts_after_a_back_off_that_doubles_and_forgets_after_a_stable_run() -> None:
    restarts = Restarts(RetryBackoff(base_s=0.2, cap_s=5.0, jitter=0.0), stable_s=10.0)
    restarts.started("planner", 0.0)
    assert restarts.exited("planner", 1.0) == pytest.approx(1.2)
    assert restarts.exited("planner", 1.1) == pytest.approx(1.2)  # same exit, same due time
    restarts.started("planner", 1.2)
    assert restarts.exited("planner", 2.0) == pytest.approx(2.4)   # crashed again: 0.4 s
    restarts.started("planner", 2.4)
    assert restarts.exited("planner", 30.0) == pytest.approx(30.2)  # up 27 s: from the start


def test_a_crash_fault_holds_its_process_down_until_its_end_and_is_not_a_crash() -> None:
    restarts = Restarts()
    restarts.started("dns", 0.0)
    restarts.hold("dns", 7.5)
    assert restarts.exited("dns", 5.0) == 7.5
    assert restarts.released("dns") and not restarts.released("dns")
    assert restarts.crashes.get("dns", 0) == 0


def test_crash_targets_name_supervised_processes() -> None:
    plain = list(procfile_commands())
    assert crash_targets(FaultType.PROCESS_KILL, "use1-az2", plain) == ["enactor_az2"]
    assert crash_targets(FaultType.PROCESS_KILL, "endpoints", plain) == ["endpoints"]
    assert crash_targets(FaultType.REDIS_RESTART, "redis", plain) == ["redis"]
    isolated = ["redis", "endpoints_az1", "endpoints_az2", "enactor_az1"]
    assert crash_targets(FaultType.PROCESS_KILL, "endpoints", isolated) == [
        "endpoints_az1", "endpoints_az2"]


def children(pid: int) -> dict[str, int]:
    """The supervisor's children by Procfile name (read from their command lines)."""
    names = {tuple(args[3:]): name for name, args in procfile_commands().items()}
    found = {}
    pids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a worker thread that just ended
            pids += (task / "children").read_text().split()
    for child in pids:
        with contextlib.suppress(FileNotFoundError):
            with_args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            cli = [a.decode() for a in with_args if a][3:]  # past 'python -m services.tools.cli'
            name = names.get(tuple(cli)) or ("redis" if b"redis" in with_args[0] else None)
            if name is not None:
                found[name] = int(child)
    return found


def wait_for(condition: object, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Cluster, Path]]:
    settings = cluster_settings(tmp_path, load_rate=50.0)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DNSRACE_") and k != "VIRTUAL_ENV"}
    env.update(cluster_env(settings))
    env["PATH"] = "/usr/bin:/bin"  # as a user who did not activate the venv
    out = tmp_path / "up.out"
    with out.open("wb") as sink:
        process = subprocess.Popen([str(Path(sys.executable).parent / "dnsrace"), "up"],
                                   stdout=sink, stderr=subprocess.STDOUT, env=env,
                                   cwd=tmp_path)
    probe = Cluster(settings, {}, tmp_path / "unused")  # asks /healthz, starts nothing
    try:
        wait_for(lambda: all(probe.health(n) for n in PROCESSES), 40, "the cluster healthy")
        yield process, probe, out
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_up_restarts_every_killed_child_and_stops_everything_on_ctrl_c(
        up: tuple[subprocess.Popen[bytes], Cluster, Path]) -> None:
    process, probe, out = up
    figures = {}
    for name in PROCESSES:
        victim = children(process.pid)[name]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda n=name, v=victim: children(process.pid).get(n, v) != v, 2.0,
                 f"{name} restarted")
        restarted = time.monotonic() - killed
        wait_for(lambda: all(probe.health(n) for n in PROCESSES), 5.0 - restarted,
                 f"the cluster healthy after {name} was killed (unhealthy now: "
                 f"{[n for n in PROCESSES if not probe.health(n)]})")
        figures[name] = (round(restarted, 2), round(time.monotonic() - killed, 2))
        assert process.poll() is None, "dnsrace up exited because a child did"
    print("restarted s, healthy s after kill -9:", json.dumps(figures))
    text = out.read_text()
    assert "enactor_az1 exited with -9; started again" in text
    assert re.search(r"^\d\d:\d\d:\d\d enactor_az2 +\| .* plan \d+: ", text, re.M)  # prefixed

    async def recorded() -> list[events.Event]:
        client = aioredis.Redis.from_url(probe.settings.effective_redis_url,
                                         decode_responses=True)
        try:
            return [e for _, e in await history.RedisHistory(client).read()]
        finally:
            await client.aclose()

    restarts = [e for e in asyncio.run(recorded()) if isinstance(e, events.ProcessRestarted)]
    # Redis's own restart is recorded too (once it answers again): every child, once each.
    assert sorted(e.process for e in restarts) == sorted(PROCESSES)
    assert {e.why for e in restarts} == {"crashed"} and {e.exit_code for e in restarts} == {-9}
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{probe.settings.metrics_port('supervisor')}/metrics").read().decode()
    assert 'dnsrace_supervisor_restarts_total{process="planner",why="crashed"} 1.0' in metrics

    pids = list(children(process.pid).values())
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 130  # as a shell reports Ctrl-C
    assert not [p for p in pids if Path(f"/proc/{p}").exists()
                and Path(f"/proc/{p}/stat").read_text().split(") ")[1][0] != "Z"]


def test_crash_faults_go_through_the_api_and_the_supervisor(
        up: tuple[subprocess.Popen[bytes], Cluster, Path]) -> None:
    process, probe, out = up
    env = {**os.environ, **cluster_env(probe.settings)}
    dnsrace = [sys.executable, "-m", "services.tools.cli"]
    before = children(process.pid)
    for kind, target, name in (("process_kill", "use1-az4", "enactor_az4"),
                               ("redis_restart", "redis", "redis")):
        added = subprocess.run([*dnsrace, "fault", "add", kind, target, "--duration", "1"],
                               env=env, capture_output=True, text=True, check=False)
        assert added.returncode == 0, added.stderr
        wait_for(lambda n=name: children(process.pid).get(n, before[n]) != before[n], 4.0,
                 f"{name} stopped and started again by {kind}")
        wait_for(lambda: all(probe.health(n) for n in PROCESSES), 8.0, "healthy again")
    refused = subprocess.run([*dnsrace, "fault", "add", "process_kill", "control",
                              "--duration", "1"], env=env, capture_output=True, text=True,
                             check=False)
    assert refused.returncode == 1 and "not valid for process_kill" in refused.stderr
    text = out.read_text()
    assert "process_kill use1-az4: enactor_az4 stopped until the fault ends" in text
    assert "redis held down; started again" in text


def regional(env: dict[str, str]) -> tuple[int, int]:
    """(newest plan, plan the regional endpoint's alias names), as 'dnsrace status' says."""
    status = subprocess.run([sys.executable, "-m", "services.tools.cli", "status", "--json"],
                            env=env, capture_output=True, text=True, check=True)
    row = json.loads(status.stdout)[0]
    return int(row["newest"]), int(row["alias_generation"] or 0)


def test_automation_off_stops_the_enactors_applying_plans_and_on_resumes(
        up: tuple[subprocess.Popen[bytes], Cluster, Path]) -> None:
    _, probe, _ = up
    env = {**os.environ, **cluster_env(probe.settings)}
    dnsrace = [sys.executable, "-m", "services.tools.cli", "automation"]
    subprocess.run([*dnsrace, "off"], env=env, check=True, capture_output=True)
    _, held = regional(env)
    # A round under way may still finish: the alias moves at most once more, then stays.
    wait_for(lambda: regional(env)[0] >= held + 4, 15, "the planner four plans ahead")
    frozen = regional(env)[1]
    assert frozen <= held + 1
    wait_for(lambda: regional(env)[0] >= frozen + 6, 15, "two more plans")
    assert regional(env)[1] == frozen
    subprocess.run([*dnsrace, "on"], env=env, check=True, capture_output=True)
    wait_for(lambda: regional(env)[1] >= regional(env)[0] - 1, 5, "the enactors caught up")


def test_a_crash_fault_without_a_supervisor_is_refused(settings_db: Settings) -> None:
    # The control service alone (as under 'honcho start'): nobody would carry the fault out.
    env = {**os.environ, **cluster_env(settings_db)}
    control = subprocess.Popen([sys.executable, "-m", "services.tools.cli", "control"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        probe = Cluster(settings_db, {}, Path("unused"))
        wait_for(lambda: probe.health("control"), 15, "control healthy")
        refused = subprocess.run([sys.executable, "-m", "services.tools.cli", "fault", "add",
                                  "process_kill", "planner", "--duration", "1"], env=env,
                                 capture_output=True, text=True, check=False)
        assert refused.returncode == 1 and "none is running" in refused.stderr
    finally:
        control.terminate()
        control.wait(10)


OUTAGE_ONLY = ["netmgr", "instances_az1", "instances_az2", "instances_az4", "nlb", "service_load"]


def test_up_with_outage_runs_issue_15s_processes_and_watch_shows_them(tmp_path: Path) -> None:
    """``dnsrace up --with-outage``: the NLB's name answers with its three AZ records through
    our DNS, its clients call it, and ``dnsrace watch --once`` prints the network lines.

    In safe mode, where C2 and C3 must hold. In legacy (the default) the NLB puts a target in
    service when it registers the launch, so whenever it registers one before Network Manager
    has propagated it, C2 breaks as it did in 2025 (CI saw it: a race, not a failure)."""
    settings = cluster_settings(tmp_path, load_rate=20.0, dwfm_droplets=6, mode="safe")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(cluster_env(settings))
    dnsrace = str(Path(sys.executable).parent / "dnsrace")
    out = tmp_path / "up.out"
    with out.open("wb") as sink:
        process = subprocess.Popen([dnsrace, "up", "--with-outage"], stdout=sink,
                                   stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    probe = Cluster(settings, {}, tmp_path / "unused")
    try:
        wait_for(lambda: all(probe.health(n) for n in PROCESSES + OUTAGE_ONLY), 60,
                 "the cluster and issue 15's processes healthy")

        def service_calls_ok() -> bool:
            text = urllib.request.urlopen(
                f"http://127.0.0.1:{settings.metrics_port('service_load')}/metrics").read()
            return re.search(rb'dnsrace_service_requests_total\{[^}]*outcome="ok"[^}]*\} [1-9]',
                             text) is not None

        wait_for(service_calls_ok, 30, "the NLB's clients calling it with success")
        watch = subprocess.run([dnsrace, "watch", "--once"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert watch.returncode == 0, watch.stderr
        text = watch.stdout
        assert "nlb            name holds 3 of 3 AZ records" in text, text
        assert "network state  " in text and "service        " in text, text
        assert "C2 BROKEN" not in text and "C3 BROKEN" not in text, text + "\n".join(
            line for line in out.read_text().splitlines() if "WARNING" in line)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 130, out.read_text()[-2000:]
