"""``--isolate``: the cluster in one network namespace per AZ (plus one for the region).

Pure tests (topology, partition commands) and relay tests over loopback run
anywhere. The rest needs root (network namespaces) and skips with that reason otherwise; CI
runs as root, so there they run: the race in legacy mode empties the name inside every AZ,
safe mode holds it and an AZ partition, and nothing is left behind, even after a crash.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.config import ISOLATION_RANGE, Settings
from services.control.client import ControlClient
from services.core import checker, events, names
from services.core.names import AZS
from services.isolate.relay import Relay, Route, enter_namespace
from services.runtime import netns
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import REPO, cluster_env
from services.runtime.ports import free_port
from services.runtime.scrape import Samples, metrics_urls, scrape
from services.runtime.topology import (
    DEAD_MAC,
    REDIS_ADDRESS,
    topology,
)
from services.store import history
from services.store.plans import PlanStore
from services.store.zone import ZoneStore
from tests.conftest import cluster_settings, require_tool, wait_until

PARTITION_S = 4.0


# --- anywhere -------------------------------------------------------------------------------

def test_every_address_is_in_the_benchmarking_range_and_each_lb_in_its_az() -> None:
    settings = Settings()
    topo = topology(settings)
    addresses = [a for node in topo.nodes for a in node.addresses]
    assert len(addresses) == len(set(addresses))
    assert all(ipaddress_in_range(a) for a in addresses)
    from services.core.balancers import fleet

    for lb in fleet(settings):
        owner = topo.az_node(lb.az)
        assert owner.extra_addresses.count(f"198.18.10.{lb.ip.rsplit('.', 1)[1]}") == 1
    assert all(len(n.host_interface) <= 15 and len(n.namespace) <= 32 for n in topo.nodes)
    placed = {p.name: p.node for p in topo.processes}
    for az in AZS:
        s = az.removeprefix("use1-")
        assert {placed[f"enactor_{s}"], placed[f"endpoints_{s}"], placed[f"loadgen_{s}"]} == {az}
    assert {placed[n] for n in ("redis", "planner", "dns", "control")} == {"regional"}
    host_ports = [p.host_port for p in topo.processes if p.host_port is not None]
    assert len(host_ports) == len(set(host_ports))


def ipaddress_in_range(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address) in ISOLATION_RANGE


def test_a_partition_pins_only_that_az_and_the_regional_node() -> None:
    topo = topology(Settings())
    cut = netns.partition_commands(topo, "use1-az1", cut=True)
    heal = netns.partition_commands(topo, "use1-az1", cut=False)
    az1, regional = topo.az_node("use1-az1"), topo.regional
    pinned = {(c[1], c[4]) for c in cut}
    assert pinned == ({(az1.namespace, a) for a in regional.addresses}
                      | {(regional.namespace, a) for a in az1.addresses})
    assert all(DEAD_MAC in c and "permanent" in c for c in cut)
    assert {(c[1], c[5]) for c in heal} == pinned
    others = {topo.az_node(az).namespace for az in ("use1-az2", "use1-az4")}
    assert not any(c[1] in others for c in cut + heal)


def test_isolation_says_it_needs_root(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from services.tools.up import run_up

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(netns.IsolationError, match="needs root"):
        netns.require_root()
    assert run_up(Settings(), None, 1, None, isolate=True) == 1
    assert "needs root" in capsys.readouterr().err


async def test_the_relay_carries_tcp_and_udp_over_loopback() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo " + await reader.read(100))
        await writer.drain()
        writer.close()

    class UdpEcho(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(b"echo " + data, addr)

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    udp_target = udp.get_extra_info("sockname")[1]
    tcp_port, udp_port = free_port(), free_port()
    with Relay([Route(tcp_port, "127.0.0.1", target),
                Route(udp_port, "127.0.0.1", udp_target, udp=True)]):
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        writer.write(b"hello")
        writer.write_eof()
        assert await reader.read() == b"echo hello"
        writer.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.sendto(b"query", ("127.0.0.1", udp_port))
            # Blocking here would stall the echo server, which runs on this event loop.
            assert await asyncio.to_thread(sock.recv, 100) == b"echo query"
    udp.close()
    server.close()


def test_an_az_partition_request_needs_an_isolated_cluster() -> None:
    from services.control.requests import FaultRequestError, parse_fault_request
    from services.core.faults import FaultType

    assert FaultType.AZ_PARTITION == "az_partition"
    if netns.available("use1-az1"):
        pytest.skip("an isolated cluster is running on this machine")
    with pytest.raises(FaultRequestError, match="--isolate"):
        parse_fault_request({"type": "az_partition", "target": "use1-az1", "duration_s": 5},
                            Settings())


# --- root -----------------------------------------------------------------------------------

@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs as root)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip (apt-get install iproute2)")


@pytest.fixture
async def isolated(request: pytest.FixtureRequest, tmp_path: Path,
                   root: None) -> AsyncIterator[Any]:
    """A running isolated cluster in the mode the test names (``@pytest.mark.parametrize``)."""
    from services.isolate.cluster import IsolatedCluster

    settings = cluster_settings(tmp_path, mode=request.param, load_rate=90.0)
    cluster = IsolatedCluster.create(settings, tmp_path / "logs")
    try:
        cluster.start()
        await asyncio.to_thread(cluster.wait_healthy, 20.0)
        yield cluster
    finally:
        cluster.stop()
    assert netns.leftovers() == []


def in_namespace(pid: int, namespace: str) -> bool:
    return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{namespace}").st_ino


def dig_inside(namespace: str) -> tuple[str, int]:
    """``dig`` run unmodified inside a namespace: its resolv.conf names the cluster's DNS."""
    out = subprocess.run(["ip", "netns", "exec", namespace, require_tool("dig"), "+time=1",
                          "+tries=1", names.REGIONAL, "A"],
                         capture_output=True, text=True, timeout=10).stdout
    status = out.split("status: ")[1].split(",")[0] if "status: " in out else "none"
    count = int(out.split("ANSWER: ")[1].split(",")[0]) if "ANSWER: " in out else -1
    return status, count


def connects_from(namespace: str, host: str, port: int, timeout_s: float = 0.5) -> bool:
    result: list[bool] = []

    def attempt() -> None:
        enter_namespace(namespace)
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return result[0]


async def race(cluster: Any) -> tuple[Any, list[events.Event]]:
    """The 2025 choreography (services.tools.race) through the relay; its report and history."""
    from services.runtime.service import redis_client
    from services.tools.race import run_race

    settings = cluster.settings
    client = redis_client(settings)
    sink = history.RedisHistory(client)
    try:
        since = await sink.last_id()
        report = await run_race(ControlClient.for_settings(settings), sink, settings.cleanup_age,
                                settings.plan_interval_s, observe_s=0.5)
        return report, [e for _, e in await sink.read(since)]
    finally:
        await client.aclose()


@pytest.mark.cluster
@pytest.mark.parametrize("isolated", ["legacy"], indirect=True)
async def test_legacy_race_empties_the_name_inside_every_az(isolated: Any) -> None:
    for name, process in isolated.processes.items():
        namespace = isolated.topo.node(isolated.topo.process(name).node).namespace
        assert in_namespace(process.pid, namespace), f"{name} is not in {namespace}"
    assert dig_inside("dnsrace-use1-az1")[0] == "NOERROR"
    report, recorded = await race(isolated)
    assert report.emptied and report.live_deletions > 0
    # A stale flip (I2), by the enactor the race held back or by one that fell behind alone.
    assert any(isinstance(e, events.BatchCommitted) and e.generation < e.previous
               for e in recorded)
    assert checker.Invariant.I3 in {v.invariant for v in checker.check(recorded)}
    # I1 as unmodified tools inside every AZ see it: what clients saw in 2025.
    for az in AZS:
        assert dig_inside(f"dnsrace-{az}") == ("NOERROR", 0)


async def converged(client: Any, settings: Settings) -> bool:
    zone, plans = ZoneStore(client, clock=WALL_CLOCK), PlanStore(client)
    newest = await plans.newest_generation()
    snapshot = await zone.snapshot()
    for endpoint in names.endpoints(settings.cells):
        alias = snapshot.alias(endpoint)
        if alias is None or alias.generation < newest - 1 or not snapshot.addresses(
                alias.target):
            return False
    return True


async def load_by_az(session: aiohttp.ClientSession, settings: Settings) -> dict[str, Samples]:
    urls = metrics_urls(settings, loadgens=len(AZS))
    return {az: await scrape(session, [urls[f"loadgen.{i + 1}"]]) for i, az in enumerate(AZS)}


async def clients_healthy(session: aiohttp.ClientSession, settings: Settings,
                          timeout_s: float = 15.0) -> dict[str, Samples]:
    """Wait until the clients of every AZ succeed for a second (no answer from before the
    first plan still cached); return their numbers at that point."""
    deadline = time.monotonic() + timeout_s
    earlier = await load_by_az(session, settings)
    while True:
        await asyncio.sleep(1.0)
        now = await load_by_az(session, settings)
        ok = "dnsrace_client_requests_total"
        if all(not failures(now[az], earlier[az]) and now[az].by(ok, "outcome").get("ok", 0)
               > earlier[az].by(ok, "outcome").get("ok", 0) for az in AZS):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"clients not all healthy within {timeout_s} s")
        earlier = now


def failures(after: Samples, before: Samples) -> dict[str, float]:
    """Failed client requests between two scrapes, by outcome."""
    key = "dnsrace_client_requests_total"
    then = before.by(key, "outcome")
    return {k: v - then.get(k, 0.0) for k, v in after.by(key, "outcome").items()
            if k != "ok" and v > then.get(k, 0.0)}


@pytest.mark.cluster
@pytest.mark.parametrize("isolated", ["safe"], indirect=True)
async def test_safe_holds_the_race_and_an_az_partition(isolated: Any) -> None:
    from services.report.monitor import Monitor
    from services.runtime.service import redis_client

    settings = isolated.settings
    client = redis_client(settings)
    sink = history.RedisHistory(client)
    since = WALL_CLOCK.now_ms()
    async with aiohttp.ClientSession() as session, Monitor(settings, out=lambda _: None) as mon:
        await mon.wait_until(lambda: mon.dns_answers(), 15, "DNS answers")
        before = await clients_healthy(session, settings)
        report, _ = await race(isolated)
        assert not report.emptied and report.stale_flips == 0 and report.live_deletions == 0

        control = ControlClient.for_settings(settings)
        fault = await control.add("az_partition", "use1-az1", PARTITION_S)
        # The cut is real and precise: use1-az1 no longer reaches Redis; use1-az2 and the
        # host do, and use1-az1 still reaches the other AZs' load balancers.
        assert not connects_from("dnsrace-use1-az1", REDIS_ADDRESS, isolated.inner.redis_port)
        assert connects_from("dnsrace-use1-az2", REDIS_ADDRESS, isolated.inner.redis_port)
        lb_az2 = isolated.topo.az_node("use1-az2").extra_addresses[0]
        assert connects_from("dnsrace-use1-az1", lb_az2, settings.lb_port)
        newest_at_cut = await PlanStore(client).newest_generation()

        async def rejoined() -> bool:
            return any(e.source == "enactor/use1-az1" and e.at_ms > fault["expires_ms"]
                       and getattr(e, "generation", 0) > newest_at_cut
                       for _, e in await sink.read(str(since)))

        await wait_until(rejoined, PARTITION_S + 15, "use1-az1 to apply plans again")
        await wait_until(lambda: converged(client, settings), 5,
                         "every endpoint on the newest plan")
        after = await load_by_az(session, settings)
    recorded = [e for _, e in await sink.read(str(since))]
    await client.aclose()
    assert mon.empty_samples() == 0 and mon.stale_answers == 0
    assert sum(a.sum("dnsrace_client_stale_answers_total") for a in after.values()) == 0
    for az in ("use1-az2", "use1-az4"):  # clients outside the partition never noticed
        assert failures(after[az], before[az]) == {}, az
    cut, healed = fault["started_ms"], fault["expires_ms"]
    assert [e for e in recorded if isinstance(e, events.FaultEnded)
            and e.fault_id == fault["id"]], "the partition did not heal at its expiry"
    silent = [e for e in recorded
              if e.source == "enactor/use1-az1" and cut + 500 < e.at_ms < healed]
    assert silent == [], "use1-az1 wrote to Redis while cut off"
    assert all(p.poll() is None for p in isolated.processes.values())
    assert checker.check(recorded) == []


def test_teardown_removes_what_a_crashed_run_left(root: None) -> None:
    crash = (
        "import os, subprocess\n"
        "from services.runtime import netns\n"
        "from services.config import Settings\n"
        "from services.runtime.topology import topology\n"
        "netns.setup(topology(Settings()))\n"
        "p = subprocess.Popen(['ip', 'netns', 'exec', 'dnsrace-use1-az1', 'sleep', '600'],\n"
        "                     start_new_session=True, stdout=subprocess.DEVNULL,\n"
        "                     stderr=subprocess.DEVNULL)\n"
        "print(p.pid, flush=True)\n"
        "os._exit(1)\n"
    )
    out = subprocess.run([sys.executable, "-c", crash], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    orphan = int(out.stdout.split()[0])
    left = netns.leftovers()
    assert f"process {orphan} in dnsrace-use1-az1" in left
    assert "link dnsrace-br0" in left and "namespace dnsrace-regional" in left
    removed = netns.teardown()
    assert f"process {orphan} in dnsrace-use1-az1" in removed
    assert netns.leftovers() == []
    assert netns.teardown() == []  # idempotent
    assert not netns.process_alive(orphan)


@pytest.mark.cluster
def test_ctrl_c_on_up_isolate_removes_everything(root: None, tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path, load_rate=30.0)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")},
           **cluster_env(settings)}
    up = subprocess.Popen([sys.executable, "-m", "services.tools.cli", "up", "--isolate"], cwd=REPO,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert up.stdout is not None
    seen = []
    deadline = time.monotonic() + 40
    for line in up.stdout:
        seen.append(line)
        if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
            break
    assert any("Ctrl-C stops everything" in line for line in seen), "".join(seen)
    assert "namespace dnsrace-use1-az4" in netns.leftovers()
    up.send_signal(signal.SIGINT)
    rest = up.communicate(timeout=40)[0]
    assert up.returncode == 130, rest
    assert netns.leftovers() == []
