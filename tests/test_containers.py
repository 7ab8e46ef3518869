"""``dnsrace up --containers`` and ``demo --containers`` on real podman containers and networks.

The image is the session's (tests/images.py, shared with test_image.py). Rootful podman
(networks with fixed addresses, ``network disconnect``) needs root: the tests skip otherwise.
The cluster's host ports are moved away from the defaults so that a cluster of the user's is
not in the way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.containers.compose import (
    COMPOSE_FILE,
    PROMETHEUS_FILE,
    document,
    render,
    render_prometheus,
)
from services.containers.engine import Engine
from services.containers.plan import LABEL
from services.core import names
from services.tools.containers_demo import classify, repaired_after_empty
from tests.images import podman, ulimits

PORTS = {"DNSRACE_METRICS_PORT_BASE": "29510", "DNSRACE_DNS_PORT": "25300",
         "DNSRACE_REDIS_PORT": "26390", "DNSRACE_CONTROL_PORT": "28600"}


@pytest.fixture
def boxed(image: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a dnsrace command that runs a cluster in containers."""
    if os.geteuid() != 0:
        pytest.skip("--containers makes rootful podman networks with fixed addresses: run as "
                    "root (CI does)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(PORTS, DNSRACE_STATE_DIR=str(tmp_path / "state"))
    yield env
    Engine("podman").sweep()


def ours() -> list[str]:
    """Containers and networks labelled as the cluster's that exist now."""
    found = podman("ps", "-a", "--filter", f"label={LABEL}=1", "--format", "{{.Names}}").stdout
    nets = podman("network", "ls", "--filter", f"label={LABEL}=1", "--format",
                  "{{.Name}}").stdout
    return found.split() + nets.split()


def dig_inside(container: str, prefix: str = "dnsrace-") -> str:
    done = subprocess.run(["podman", "exec", prefix + container, "dig", "+tries=1",
                           "+time=1", "+noall", "+comments", "+answer", names.REGIONAL + ".",
                           "A"], capture_output=True, text=True, timeout=15)
    return classify(done.stdout)[0]


def wait_for(condition: str, check: Callable[[], bool], timeout_s: float, log: Path,
             why: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{condition} not within {timeout_s:.0f} s:\n" + (
            why() if why else log.read_text()[-3000:])
        time.sleep(0.3)


def test_demo_in_containers_dig_inside_the_az1_enactor_sees_the_empty_name_then_the_repair(
        boxed: dict[str, str], image: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.tools.cli", "demo", "--containers", "--legacy-only",
         "--image", image, "--clients", "0", "--rate", "100"], env=boxed, cwd=tmp_path,
        capture_output=True, text=True, timeout=400)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    assert "inside dnsrace-enactor_az1 (its resolv.conf): NOERROR with no address" in out
    seen = next(line for line in out.splitlines()
                if line.startswith("dig inside dnsrace-enactor_az1: legacy "))
    # Addresses, the empty name, addresses again (a timed-out dig may come in between).
    assert repaired_after_empty(seen.split(": legacy ", 1)[1].split(" -> ")), seen
    assert "verdict: legacy broke as in 2025 and was repaired by hand" in out
    assert ours() == []  # every container and network is gone


def test_up_in_containers_partitions_an_az_by_network_and_leaves_nothing(
        boxed: dict[str, str], image: str, tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        # Safe mode: an AZ cut off and back must not empty the name (legacy mode may race).
        up = subprocess.Popen([sys.executable, "-m", "services.tools.cli", "up", "--containers",
                               "--mode", "safe", "--image", image], env=boxed, cwd=tmp_path,
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for("every process healthy", lambda: b"every process is healthy" in log.read_bytes(),
                 180, log)
        networks = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                     "dnsrace-enactor_az1").stdout)
        assert list(networks) == ["dnsrace-use1-az1"]
        wait_for("the AZ-1 enactor's dig answering", lambda: dig_inside("enactor_az1") ==
                 "answers", 30, log)
        fault = subprocess.run([sys.executable, "-m", "services.tools.cli", "fault", "add",
                                "az_partition", "use1-az1", "--duration", "6"], env=boxed,
                               capture_output=True, text=True, timeout=30)
        assert fault.returncode == 0, fault.stderr
        wait_for("use1-az1 cut off", lambda: dig_inside("enactor_az1") == "no answer", 15, log)
        assert dig_inside("planner") == "answers"  # the region still resolves
        wait_for("use1-az1 healed", lambda: dig_inside("enactor_az1") == "answers", 45, log,
                 lambda: dig_inside("enactor_az1") + "; partition lines:\n" + "\n".join(
                     line for line in log.read_text().splitlines() if "az_partition" in line))
        # The partitioner connects the network, then says so: the dig can answer first.
        wait_for("the partitioner's line", lambda: b"use1-az1 back with Redis and DNS"
                 in log.read_bytes(), 15, log)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(120)
    assert up.returncode == 130
    assert ours() == []


def test_a_crashed_runs_leftovers_are_swept_by_label(image: str) -> None:
    """What a killed 'up' leaves (labelled containers and networks) goes at the next start."""
    if os.geteuid() != 0:
        pytest.skip("rootful podman networks need root")
    podman("network", "create", "--label", f"{LABEL}=1", "--subnet", "198.19.250.0/24",
           "dnsrace-leftover")
    podman("run", "-d", "--name", "dnsrace-leftover", "--label", f"{LABEL}=1", "--network",
           "dnsrace-leftover", "--no-healthcheck", *ulimits(), image, "sleep", "300")
    assert set(ours()) >= {"dnsrace-leftover"}
    removed = Engine("podman").sweep()
    assert "dnsrace-leftover" in removed
    assert ours() == []


def compose_container(service: str) -> str:
    names_ = podman("ps", "--filter", "label=io.podman.compose.project=dnsrace", "--filter",
                    f"label=io.podman.compose.service={service}", "--format",
                    "{{.Names}}").stdout.split()
    return names_[0] if names_ else ""


def test_the_compose_file_runs_with_healthchecks_and_the_az1_enactor_resolves_through_dns(
        boxed: dict[str, str], image: str) -> None:
    compose = shutil.which("podman-compose") or str(Path(sys.executable).parent /
                                                   "podman-compose")
    if not Path(compose).exists():
        pytest.skip("podman-compose is not installed (pip install -e '.[test]')")
    env = {**boxed, "COMPOSE_DNSRACE_IMAGE": image, "COMPOSE_DNSRACE_DNS_PORT": "45300",
           "COMPOSE_DNSRACE_CONTROL_PORT": "48600", "COMPOSE_DNSRACE_REDIS_PORT": "46390"}
    # No pod: in one, podman 4.3 sometimes refused to start the containers that share the
    # data plane's namespace ("generating dependency graph ... not found in input list").
    run = [compose, "--in-pod", "false", "-f", str(COMPOSE_FILE), "-p", "dnsrace"]
    up = subprocess.run([*run, "up", "-d"], env=env, capture_output=True, text=True,
                        timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        checked = [name for name, service in document()["services"].items()
                   if "healthcheck" in service and "profiles" not in service]
        deadline = time.monotonic() + 120
        for service in checked:  # podman 4.3 runs healthchecks only when asked (no systemd)
            container = compose_container(service)
            while podman("healthcheck", "run", container, check=False).returncode != 0:
                assert time.monotonic() < deadline, f"{service} never healthy: " + podman(
                    "logs", container, check=False).stderr[-2000:]
                time.sleep(0.5)
        enactor = compose_container("enactor_az1")
        networks = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                     enactor).stdout)
        assert list(networks) == ["dnsrace_use1-az1"]
        deadline = time.monotonic() + 90
        while (seen := dig_inside(enactor, prefix="")) != "answers":
            assert time.monotonic() < deadline, (
                f"dig inside the AZ-1 enactor: {seen}\n" + "\n".join(
                    (lambda d: d.stdout + d.stderr)(podman("logs", "--tail", "5",
                                                           compose_container(s), check=False))
                    for s in ("dns", "planner", "enactor_az1")))
            time.sleep(0.5)
    finally:
        down = subprocess.run([*run, "down", "-t", "2"], env=env, capture_output=True,
                              text=True, timeout=180)
    assert down.returncode == 0, down.stderr[-2000:]
    assert podman("ps", "-a", "-q", "--filter", "label=io.podman.compose.project=dnsrace"
                  ).stdout.split() == []
    assert [n for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split()
            if n.startswith("dnsrace_")] == []


def test_the_compose_file_is_generated_from_the_plan() -> None:
    assert COMPOSE_FILE.read_text() == render(), (
        "docker-compose.yml is stale: run python -m services.containers.compose")
    assert PROMETHEUS_FILE.read_text() == render_prometheus()
    services = document()["services"]
    assert services["enactor_az1"]["networks"] == {"use1-az1": {"ipv4_address":
                                                                "198.19.101.11"}}
    assert services["enactor_az1"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["loadgen"]["network_mode"] == "service:dataplane"
    assert [n for n, s in services.items() if "build" in s] == ["redis"]
