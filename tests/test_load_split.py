"""The client fleet spread over load generator processes: the copies split the rate and the
virtual clients (issue 19), as many as the rate needs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from services.config import load
from services.runtime.cluster import Cluster, cluster_env
from services.runtime.load_split import MAX_LOADGENS, copy_args, loadgen_count, share
from services.runtime.scrape import Samples, metrics_urls, scrape
from tests.conftest import cluster_settings


def test_the_rate_decides_how_many_load_generators_run() -> None:
    assert loadgen_count(load({}, load_rate=200.0)) == 1
    assert loadgen_count(load({}, load_rate=2000.0)) == 1
    assert loadgen_count(load({}, load_rate=2001.0, load_clients=1000)) == 2
    assert loadgen_count(load({}, load_rate=5000.0, load_clients=1000)) == 3
    assert loadgen_count(load({}, load_rate=1e6, load_clients=1000)) == MAX_LOADGENS
    # never a copy without clients: it would be a shared cache, not part of the fleet
    assert loadgen_count(load({}, load_rate=5000.0, load_clients=2)) == 2


def test_copies_split_the_rate_and_the_clients_and_take_their_own_ports() -> None:
    settings = load({}, load_rate=5000.0, load_clients=1001)
    args = [copy_args(settings, 3, i) for i in range(3)]
    assert [a[a.index("--rate") + 1] for a in args] == ["1666.67"] * 3
    assert [int(a[a.index("--clients") + 1]) for a in args] == [334, 334, 333]
    assert len({a[a.index("--metrics-port") + 1] for a in args}) == 3
    assert sum(share(7, 4, i) for i in range(4)) == 7
    with pytest.raises(ValueError, match="1 to 6 copies"):
        copy_args(settings, MAX_LOADGENS + 1, 0)


async def _loadgens(urls: list[str]) -> tuple[float, list[Samples]]:
    async with aiohttp.ClientSession() as session:
        return time.monotonic(), [await scrape(session, [url]) for url in urls]


def _requests(samples: Samples) -> float:
    return sum(samples.by("dnsrace_client_requests_total", "outcome").values())


@pytest.mark.cluster
def test_two_load_generators_split_the_clients_and_together_serve_the_rate(
        tmp_path: Path) -> None:
    rate, clients = 300.0, 101
    settings = cluster_settings(tmp_path, load_rate=rate, load_rate_per_process=200.0,
                                load_clients=clients, load_ramp_s=0.0, ec2_launch_rate=0.0,
                                cells=0)
    cluster = Cluster(settings, cluster_env(settings), tmp_path / "logs",
                      only=("redis", "planner", "enactor_az1", "dns", "endpoints", "loadgen"))
    assert sorted(n for n in cluster.commands() if n.startswith("loadgen")) == [
        "loadgen", "loadgen.2"]
    urls = [url for name, url in metrics_urls(settings).items() if name.startswith("loadgen")]
    assert len(urls) == 2
    with cluster:
        cluster.start()
        cluster.wait_healthy(30)
        # both copies serving
        deadline = time.monotonic() + 30
        while True:
            t0, first = asyncio.run(_loadgens(urls))
            if all(s.sum("dnsrace_client_requests_total", outcome="ok") > 0 for s in first):
                break
            assert time.monotonic() < deadline, "the load generators served nothing in 30 s"
            time.sleep(0.2)  # poll interval
        t1, last = t0, first
        while t1 - t0 < 4.0:  # a measuring window of at least 4 s
            time.sleep(0.5)  # poll interval
            t1, last = asyncio.run(_loadgens(urls))
    assert [s.sum("dnsrace_client_fleet_clients") for s in last] == [51, 50]
    assert [s.sum("dnsrace_client_target_requests_per_second") for s in last] == [150, 150]
    per_copy = [(_requests(b) - _requests(a)) / (t1 - t0) for a, b in zip(first, last,
                                                                           strict=True)]
    # together the configured rate (each taking the whole rate would make 600/s)
    assert 0.8 * rate <= sum(per_copy) <= 1.2 * rate, per_copy
    assert all(0.8 * rate / 2 <= r <= 1.2 * rate / 2 for r in per_copy), per_copy


def test_dnsrace_up_refuses_more_load_generators_than_ports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from services.tools.up import run_up

    settings = load({}, state_dir=str(tmp_path / "state"))
    assert run_up(settings, None, MAX_LOADGENS + 1, None, False) == 2
    assert "--loadgen must be between 1 and 6, got 7" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # nothing started
