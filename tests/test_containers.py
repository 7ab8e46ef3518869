"""``dnsrace up --containers`` and ``demo --containers`` on real podman containers and networks.

The image is the session's (tests/images.py, shared with test_image.py). Rootful podman
(networks with fixed addresses, ``network disconnect``) needs root: the tests skip otherwise.
The cluster's host ports are moved away from the defaults so that a cluster of the user's is
not in the way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.containers.engine import Engine
from services.containers.plan import LABEL
from services.core import names
from services.tools.containers_demo import classify
from tests.images import image, podman, ulimits

__all__ = ["image"]

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


def dig_inside(container: str) -> str:
    done = subprocess.run(["podman", "exec", f"dnsrace-{container}", "dig", "+tries=1",
                           "+time=1", "+noall", "+comments", "+answer", names.REGIONAL + ".",
                           "A"], capture_output=True, text=True, timeout=15)
    return classify(done.stdout)[0]


def wait_for(condition: str, check: object, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{condition} not within {timeout_s:.0f} s:\n" + \
            log.read_text()[-3000:]
        time.sleep(0.3)


def test_demo_in_containers_dig_inside_the_az1_enactor_sees_the_empty_name_then_the_repair(
        boxed: dict[str, str], image: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.tools.cli", "demo", "--containers", "--legacy-only",
         "--image", image], env=boxed, cwd=tmp_path, capture_output=True, text=True,
        timeout=400)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    assert "inside dnsrace-enactor_az1 (its resolv.conf): NOERROR with no address" in out
    assert "dig inside dnsrace-enactor_az1: legacy answers -> empty" in out
    assert "verdict: legacy broke as in 2025 and was repaired by hand" in out
    assert ours() == []  # every container and network is gone


def test_up_in_containers_partitions_an_az_by_network_and_leaves_nothing(
        boxed: dict[str, str], image: str, tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "services.tools.cli", "up", "--containers",
                               "--image", image], env=boxed, cwd=tmp_path, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
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
        wait_for("use1-az1 healed", lambda: dig_inside("enactor_az1") == "answers", 30, log)
        assert b"use1-az1 back with Redis and DNS" in log.read_bytes()
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
