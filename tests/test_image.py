"""The Dockerfile builds with no registry (tests/images.py) and its image runs dnsrace."""

from __future__ import annotations

import json
import time
from importlib.metadata import version

from tests.images import LABEL, podman, ulimits


def test_image_runs_dnsrace_as_a_user_not_root(image: str) -> None:
    done = podman("run", "--rm", "--network", "none", *ulimits(), image,
                  "sh", "-c", "id -un; dnsrace --version; command -v dig")
    assert done.stdout.split() == ["dnsrace", "dnsrace", version("dnsrace"), "/usr/bin/dig"]


def test_healthcheck_turns_healthy_on_a_serving_process(image: str) -> None:
    """The image's HEALTHCHECK asks /healthz; the DNS server (with its Redis) answers it,
    and dig inside the container gets the zone's SOA from it (no planner: no plan yet)."""
    check = json.loads(podman("image", "inspect", "--format", "{{json .HealthCheck}}",
                              image).stdout)
    assert "/healthz" in " ".join(check["Test"])
    name = f"dnsrace-image-test-{time.monotonic_ns()}"
    podman("run", "-d", "--name", name, "--label", LABEL, "--network", "none", *ulimits(),
           "-e", "HEALTH_PORT=9514", image, "sh", "-c", "dnsrace redis & exec dnsrace dns")
    try:
        deadline = time.monotonic() + 60
        while podman("healthcheck", "run", name, check=False).returncode != 0:
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr
            time.sleep(0.5)
        answer = podman("exec", name, "dig", "+short", "-p", "5300", "@127.0.0.1", "SOA",
                        "us-east-1.amazonaws.com").stdout.split()
        assert answer[:1] == ["ns1.us-east-1.amazonaws.com."]
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)
