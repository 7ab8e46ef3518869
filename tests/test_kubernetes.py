"""deploy/kubernetes/ is generated, and it runs: ``podman kube play`` of its kustomize build.

podman 4.3 plays Deployments and ConfigMaps (tests/kube.py adapts the rest); the pods join a
network of our own (198.19.200.0/24) and the test asks our DNS server, from inside the AZ-1
enactor's pod, for the regional name: an answer with addresses needs Redis, the DNS server,
the planner and the enactors all working.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from services.containers.kube import FOLDER, ZONE_KEY, render_all
from services.core import names
from tests.images import podman
from tests.kube import build, for_podman

NETWORK = "dnsrace-kube"


def test_the_manifests_are_generated_and_listed_by_the_kustomization() -> None:
    for path, text in render_all().items():
        assert path.read_text() == text, f"{path} is stale: run python -m services.containers.kube"
    documents = build()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert {("StatefulSet", "redis"), ("Service", "dns"), ("Deployment", "loadgen"),
            ("Deployment", "enactor-use1-az1")} <= kinds
    dns = next(d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == "dns")
    assert {p["protocol"] for p in dns["spec"]["ports"]} == {"UDP", "TCP"}
    for az in ("use1-az1", "use1-az2", "use1-az4"):
        enactor = next(d for d in documents if d["metadata"]["name"] == f"enactor-{az}")
        terms = enactor["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"] == [{"key": ZONE_KEY, "operator": "In",
                                                 "values": [az]}]
    for document in documents:
        if document["kind"] in ("Deployment", "StatefulSet"):
            for container in document["spec"]["template"]["spec"]["containers"]:
                assert "readinessProbe" in container and "livenessProbe" in container
    if shutil.which("kubectl"):  # the real kustomize agrees on what the folder holds
        done = subprocess.run(["kubectl", "kustomize", str(FOLDER)], capture_output=True,
                              text=True, timeout=60)
        if done.returncode == 0:
            built = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(done.stdout)}
            assert built == kinds


def test_podman_kube_play_runs_the_manifests_and_dns_answers_inside(image: str,
                                                                     tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("podman kube play on a network of our own needs root (CI runs as root)")
    # Pods take no --ulimit: the defaults go in containers.conf, at the current limits.
    nofile = min(*resource.getrlimit(resource.RLIMIT_NOFILE), 4096)
    nproc = min(*resource.getrlimit(resource.RLIMIT_NPROC), 4096)
    conf = tmp_path / "containers.conf"
    conf.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", '
                    f'"nproc={nproc}:{nproc}"]\n'
                    + Path(os.environ["CONTAINERS_CONF"]).read_text())
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    played = tmp_path / "dnsrace.yaml"
    played.write_text(yaml.safe_dump_all(for_podman(build(), image)))
    podman("network", "rm", "-f", NETWORK, check=False)
    podman("network", "create", "--label", "dnsrace.kube=1", "--subnet", "198.19.200.0/24",
           NETWORK)
    try:
        play = subprocess.run(["podman", "kube", "play", "--network", NETWORK, str(played)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert play.returncode == 0, play.stderr[-3000:]
        enactor = "enactor-use1-az1-pod-0-enactor"
        deadline = time.monotonic() + 90
        while True:
            try:  # the pod's name (aardvark-dns) may not resolve yet: a hung dig is a retry
                dig = subprocess.run(["podman", "exec", enactor, "dig", "+short", "+tries=1",
                                      "+time=2", "-p", "5300", "@dns-pod-0", names.REGIONAL],
                                     env=env, capture_output=True, text=True, timeout=20)
            except subprocess.TimeoutExpired as e:
                dig = subprocess.CompletedProcess(e.cmd, 124, "", "dig timed out after 20 s")
            if dig.returncode == 0 and dig.stdout.split():
                break
            assert time.monotonic() < deadline, (
                f"no answer from dns inside {enactor}: {dig.stdout} {dig.stderr}\n"
                + podman("logs", "dns-pod-0-dns", check=False).stderr[-2000:])
            time.sleep(1)
        assert all(a.startswith("127.0.10.") for a in dig.stdout.split())
    finally:
        down = subprocess.run(["podman", "kube", "down", str(played)], env=env,
                              capture_output=True, text=True, timeout=180)
        podman("network", "rm", "-f", NETWORK, check=False)
    assert down.returncode == 0, down.stderr[-2000:]
    pods = podman("pod", "ps", "--format", "{{.Name}}").stdout.split()
    assert not [p for p in pods if p.endswith("-pod-0")]
