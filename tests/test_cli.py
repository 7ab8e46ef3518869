"""The CLI as a person meets it: clear one-line errors for mistakes, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.runtime.ports import free_port
from services.tools import cli
from tests.conftest import REPO


def dnsrace(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    return subprocess.run([sys.executable, "-m", "services.tools.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env={**clean, **env})


def test_building_the_parser_registers_no_metrics() -> None:
    """Every service process builds the parser: it must carry only its own metrics."""
    before = set(REGISTRY._names_to_collectors)
    cli.build_parser()
    assert set(REGISTRY._names_to_collectors) == before


@pytest.mark.parametrize(("args", "env", "message"), [
    (("config",), {"DNSRACE_MODEE": "safe"}, "unknown setting DNSRACE_MODEE"),
    (("config",), {"DNSRACE_MODE": "fast"}, "choose one of legacy, safe"),
    (("config",), {"DNSRACE_PLAN_INTERVAL_S": "soon"}, "is not a valid float"),
    (("config",), {"DNSRACE_VELOCITY_MAX_SHARE": "0"}, "DNSRACE_VELOCITY_MAX_SHARE must be "
                                                        "above 0 and at most 1"),
    (("run", "scenarios/nope.toml"), {}, "cannot read scenario"),
    (("soak", "--faults", "meteor"), {}, "--faults takes"),
    (("up", "--with-outage", "--isolate"), {}, "--with-outage runs on this host's loopback"),
    (("ec2", "throttle", "fast"), {}, "or 'off', not 'fast'"),
    (("ec2", "throttle", "0"), {}, "items per second per host (> 0)"),
    (("ec2", "restart", "3"), {}, "a DWFM host, 1 to 2"),
    (("ec2", "launches", "fast"), {}, "launches takes a rate in launches per second (> 0) or "
                                        "'off', not 'fast'"),
])
def test_mistakes_get_one_clear_line(args: tuple[str, ...], env: dict[str, str],
                                     message: str) -> None:
    result = dnsrace(*args, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_tools_say_when_the_cluster_is_not_up() -> None:
    port = str(free_port())
    result = dnsrace("fault", "list", DNSRACE_CONTROL_PORT=port)
    assert result.returncode == 1
    assert "is not reachable" in result.stderr and "dnsrace up" in result.stderr
    status = dnsrace("status", DNSRACE_REDIS_PORT=str(free_port()))
    assert status.returncode == 1
    assert "not reachable" in status.stderr and "Traceback" not in status.stderr
    ec2 = dnsrace("ec2", "status", DNSRACE_METRICS_PORT_BASE=port)
    assert ec2.returncode == 1
    assert "no DWFM host answers" in ec2.stderr and "dnsrace up" in ec2.stderr
    assert len(ec2.stderr.strip().splitlines()) == 1
    throttle = dnsrace("ec2", "throttle", "5", DNSRACE_METRICS_PORT_BASE=port)
    assert throttle.returncode == 1 and "not reachable" in throttle.stderr
    assert "Traceback" not in throttle.stderr
    launches = dnsrace("ec2", "launches", "2", DNSRACE_METRICS_PORT_BASE=port)
    assert launches.returncode == 1 and "ec2_api is not reachable" in launches.stderr
    assert "Traceback" not in launches.stderr


def test_config_lists_every_setting_with_its_meaning() -> None:
    result = dnsrace("config")
    assert result.returncode == 0
    assert "DNSRACE_CLEANUP_AGE" in result.stdout and "generations older" in result.stdout


def test_a_second_cluster_on_the_same_ports_is_refused_with_the_reason(tmp_path: Path) -> None:
    from services.runtime.cluster import Cluster, ClusterError, cluster_env
    from tests.conftest import cluster_settings

    settings = cluster_settings(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.dns_port))
        taken.listen()
        cluster = Cluster(settings, cluster_env(settings), tmp_path / "logs")
        with pytest.raises(ClusterError, match=f"port {settings.dns_port} \\(dns\\) is in use"):
            cluster.start()
    assert cluster.processes == {}
