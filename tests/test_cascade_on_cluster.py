"""services.tools.cascade_run.on_cluster: how ``dnsrace cascade`` and ``dnsrace outage`` bring
a real cluster (here: its Redis alone) up around their script and report what went wrong."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.runtime.cluster import Cluster, cluster_env
from services.tools.cascade_run import CascadeError, Run, on_cluster
from tests.conftest import cluster_settings


def _run_and_cluster(tmp_path: Path) -> tuple[Run, Cluster, list[str]]:
    settings = cluster_settings(tmp_path)
    lines: list[str] = []
    cluster = Cluster(settings, cluster_env(settings), tmp_path / "logs", only=("redis",))
    return Run(settings, [], lines.append), cluster, lines


def _stopped(cluster: Cluster) -> bool:
    return bool(cluster.processes) and all(p.poll() is not None
                                           for p in cluster.processes.values())


def test_a_script_that_fails_as_a_run_can_is_a_problem_and_the_cluster_stops(
        tmp_path: Path) -> None:
    run, cluster, lines = _run_and_cluster(tmp_path)
    ran: list[bool] = []

    async def script() -> None:
        ran.append(_stopped(cluster))
        raise CascadeError("the nlb refused the failover switch")

    problems = asyncio.run(on_cluster(run, cluster, 30.0, script))
    assert ran == [False]  # the script ran with the cluster up
    assert problems == ["the nlb refused the failover switch"]
    assert "!! the nlb refused the failover switch" in lines
    assert any(f"cluster up (redis); logs in {tmp_path / 'logs'}" in line for line in lines)
    assert _stopped(cluster)


def test_any_other_error_is_raised_after_the_cluster_stops(tmp_path: Path) -> None:
    run, cluster, _ = _run_and_cluster(tmp_path)

    async def script() -> None:
        raise ValueError("a bug in the script")

    with pytest.raises(ValueError, match="a bug in the script"):
        asyncio.run(on_cluster(run, cluster, 30.0, script))
    assert _stopped(cluster)
