"""``dnsrace up``: the Procfile's processes in the foreground under the project's supervisor.

Output is prefixed per process as honcho prints it (``12:00:01 planner | ...``; logs also go
to ``<state_dir>/logs``), a process that exits is started again with a back-off, crash faults
of the fault API are carried out, and only Ctrl-C (or SIGTERM) stops everything. ``--isolate``
runs the same supervisor over the network-namespace cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal
import sys
import threading
from pathlib import Path

from honcho.printer import Message, Printer
from prometheus_client import start_http_server

from services.config import Mode, Settings
from services.runtime.cluster import Cluster, ClusterError, cluster_env
from services.runtime.load_split import MAX_LOADGENS
from services.runtime.prometheus import PrometheusError, prometheus_alongside
from services.tools.containers_args import ContainerOptions
from services.tools.supervisor import Supervisor

COLOURS = ("36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1")


class Output:
    """honcho's printer, shared by the output threads of every process."""

    def __init__(self, names: list[str]) -> None:
        self.printer = Printer(sys.stdout, width=max(len(n) for n in [*names, "supervisor"]))
        self.colours = {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(sorted(names))}
        self.lock = threading.Lock()

    def line(self, name: str, data: bytes | str) -> None:
        message = Message("line", data, datetime.datetime.now(), name,
                          self.colours.get(name, "37"))
        with self.lock, contextlib.suppress(ValueError, OSError):
            self.printer.write(message)

    def say(self, text: str) -> None:
        self.line("supervisor", text)


def run_up(settings: Settings, mode: Mode | None, loadgens: int | None,
           prometheus_port: int | None, isolate: bool,
           containers: ContainerOptions | None = None, with_outage: bool = False) -> int:
    settings = settings.replace(mode=mode or settings.mode)
    if with_outage and (containers is not None or isolate):
        print("dnsrace up: --with-outage runs on this host's loopback only; drop --containers "
              "or --isolate to use it", file=sys.stderr)
        return 2
    if loadgens is not None and not 1 <= loadgens <= MAX_LOADGENS:
        print(f"dnsrace up: --loadgen must be between 1 and {MAX_LOADGENS}, got {loadgens}",
              file=sys.stderr)
        return 2
    log_dir = Path(settings.state_dir).resolve() / "logs"
    cluster: Cluster
    if containers is not None:
        from services.containers.cluster import ContainerCluster

        if isolate or (loadgens or 1) > 1:
            print("dnsrace up: --containers takes neither --isolate nor --loadgen", file=sys.stderr)
            return 2
        try:
            cluster = ContainerCluster.create(settings, log_dir, containers.image,
                                              containers.engine)
        except ClusterError as e:
            print(f"dnsrace up: {e}", file=sys.stderr)
            return 1
    elif isolate:
        from services.isolate.cluster import IsolatedCluster
        from services.runtime import netns

        try:
            netns.require_root()
            cluster = IsolatedCluster.create(settings, log_dir)
        except (netns.IsolationError, ClusterError) as e:
            print(f"dnsrace up: {e}", file=sys.stderr)
            return 1
    else:
        cluster = Cluster(settings, cluster_env(settings), log_dir,
                          copies={"loadgen": loadgens} if loadgens else {}, outage=with_outage)
    output = Output(list(cluster.commands()))
    cluster.echo = output.line
    supervisor = Supervisor(cluster, say=output.say)
    isolated = hasattr(cluster, "topo")  # its load generators are one per AZ, not copies
    return asyncio.run(_supervise(supervisor, output, prometheus_port,
                                  (loadgens or 1) if isolated else cluster.loadgens()))


async def _supervise(supervisor: Supervisor, output: Output, prometheus_port: int | None,
                     loadgens: int | None) -> int:
    cluster = supervisor.cluster
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    partitions: asyncio.Task[None] | None = None
    with contextlib.ExitStack() as stack:
        try:
            await asyncio.to_thread(supervisor.start)
        except ClusterError as e:
            await asyncio.to_thread(cluster.stop)
            print(f"dnsrace up: {e}", file=sys.stderr)
            return 1
        stack.callback(cluster.stop)
        with contextlib.suppress(OSError):  # the restarts counter, for Prometheus
            start_http_server(cluster.settings.metrics_port("supervisor"), addr="127.0.0.1")
        output.say(f"mode {cluster.settings.mode}: {len(cluster.processes)} processes "
                   f"(logs in {cluster.log_dir}); Ctrl-C stops them all")
        if prometheus_port is not None:
            try:
                server = stack.enter_context(prometheus_alongside(
                    cluster.settings, port=prometheus_port, loadgens=loadgens,
                    wait_scraping=False, network="nlb" in cluster.commands()))
            except PrometheusError as e:
                print(f"dnsrace up: {e}", file=sys.stderr)
                return 1
            output.say(f"Prometheus on {server.url}")
        if hasattr(cluster, "topo"):  # isolated: where everything lives, how to reach it
            from services.isolate.cluster import IsolatedCluster, describe

            assert isinstance(cluster, IsolatedCluster)
            output.say(describe(cluster))
        if hasattr(cluster, "layout"):  # in containers: the same, and AZ partitions
            from services.containers.cluster import ContainerCluster
            from services.containers.partition import follow_partitions

            assert isinstance(cluster, ContainerCluster)
            output.say(cluster.describe())
            partitions = asyncio.create_task(follow_partitions(cluster, stop, output.say))
        healthy = asyncio.create_task(_announce_healthy(supervisor, output, stop))
        await supervisor.run(stop)
        healthy.cancel()
        if partitions is not None:
            await partitions  # heals every cut AZ before the containers go
        output.say("stopping every process")
        # The ExitStack stops the cluster (and tears down the namespaces when isolated).
    return 130  # stopped by Ctrl-C or SIGTERM, the only way it ends once up


async def _announce_healthy(supervisor: Supervisor, output: Output, stop: asyncio.Event) -> None:
    cluster = supervisor.cluster

    def every_process_healthy() -> bool:
        return all(cluster.health(name) for name in list(cluster.processes))

    while not stop.is_set():
        if await asyncio.to_thread(every_process_healthy):
            output.say("every process is healthy")
            return
        await asyncio.sleep(0.5)
