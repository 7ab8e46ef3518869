"""The isolated topology in one place: which node (AZ or region) holds which address and process.

Both ``dnsrace up --isolate`` (one Linux network namespace per node, joined by a bridge) and
``docker-compose.yml`` (one container per node on one Docker network) are built from
:func:`topology`, so they cannot drift apart: the namespaces are made from it at run time and
the compose file is generated from it (``python -m services.isolate.compose``) and checked
against it by a test.

Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for benchmarking: never
routed on the Internet, and not in use on the machines we run on.

=============  ===================  ===========================================================
node           address              what it holds
=============  ===================  ===========================================================
(bridge)       198.18.0.1           the host's end of the bridge (compose: the gateway)
regional       198.18.0.2           planner, DNS (port 53), control
redis          198.18.0.3           Redis (in the regional namespace; its own container)
use1-az1       198.18.0.11          enactor, load balancers 198.18.10.1, .4, .7 ..., load client
use1-az2       198.18.0.12          the same for use1-az2 (198.18.10.2, .5 ...)
use1-az4       198.18.0.14          the same for use1-az4 (198.18.10.3, .6 ...)
=============  ===================  ===========================================================
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from services.config import Settings
from services.core.balancers import fleet
from services.core.names import AZS

"""Every address isolation uses lies in here (RFC 2544 benchmarking range)."""
NETWORK = ipaddress.ip_network("198.18.0.0/16")
"""The one layer-2 network all nodes share (a bridge, or a Docker network)."""
PREFIX_LENGTH = NETWORK.prefixlen
GATEWAY = "198.18.0.1"
REGIONAL_ADDRESS = "198.18.0.2"
REDIS_ADDRESS = "198.18.0.3"
PROMETHEUS_ADDRESS = "198.18.0.4"
"""Prometheus's container (compose only; under --isolate it runs on the host if asked)."""
LB_NETWORK = "198.18.10"
"""The load balancers' first three octets (``DNSRACE_LB_NETWORK``) when isolated."""
DNS_PORT = 53
"""Where the DNS server listens when isolated, so that an unmodified resolver finds it."""
NAME_PREFIX = "dnsrace-"
"""Every namespace, link and /etc/netns directory isolation creates starts with this."""
BRIDGE = NAME_PREFIX + "br0"
INNER_INTERFACE = "eth0"
"""The node's end of its veth pair, inside its namespace."""
DEAD_MAC = "02:64:6e:73:ff:ff"
"""A MAC no node has: a partition pins the other side's addresses to it (frames vanish)."""
LOADGEN_PORT_OFFSET = 6
EXTRA_ENDPOINTS_PORT_OFFSET = 9
"""endpoints of the 2nd and 3rd AZ appear on the host at metrics_port_base + 9 and + 10."""

Placement = Literal["netns", "compose"]


@dataclass(frozen=True)
class Node:
    """One namespace (or container): its own address, the extra ones it answers for."""

    name: str
    address: str
    extra_addresses: tuple[str, ...] = ()
    az: str | None = None

    @property
    def namespace(self) -> str:
        return NAME_PREFIX + self.name

    @property
    def host_interface(self) -> str:
        """The host's end of this node's veth pair (at most 15 characters)."""
        return NAME_PREFIX + self.name.removeprefix("use1-")[:7]

    @property
    def mac(self) -> str:
        return "02:64:6e:73:00:{:02x}".format(int(self.address.rsplit(".", 1)[1]))

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address, *self.extra_addresses)


@dataclass(frozen=True)
class Process:
    """One process of the cluster, where it runs, and where its /metrics can be read."""

    name: str
    """Procfile-style: ``enactor_az1``, ``endpoints_az2``, ``loadgen_az4``, ``redis`` ..."""
    node: str
    args: tuple[str, ...]
    """``dnsrace`` arguments (empty for ``redis``, which runs the Redis server itself)."""
    metrics_port: int | None = None
    """Port of /metrics and /healthz on the node's 127.0.0.1 (None: redis)."""
    host_port: int | None = None
    """Port on the host's 127.0.0.1 where that port is relayed (the usual one when unique)."""
    az: str | None = None


@dataclass(frozen=True)
class Topology:
    nodes: tuple[Node, ...]
    processes: tuple[Process, ...]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r}; nodes are {', '.join(n.name for n in self.nodes)}")

    def az_node(self, az: str) -> Node:
        for node in self.nodes:
            if node.az == az:
                return node
        raise KeyError(f"no node for AZ {az!r}; AZs are {', '.join(AZS)}")

    @property
    def regional(self) -> Node:
        return self.node("regional")

    def on(self, node: str) -> tuple[Process, ...]:
        return tuple(p for p in self.processes if p.node == node)

    def process(self, name: str) -> Process:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(f"no process {name!r}")


def az_address(az: str) -> str:
    """``use1-az1`` -> 198.18.0.11: the AZ's number in the last octet, plus ten."""
    return f"198.18.0.{10 + int(az.rsplit('az', 1)[1])}"


def lb_address(ip: str) -> str:
    """A load balancer's address when isolated: the same last octet, in ``LB_NETWORK``."""
    return f"{LB_NETWORK}.{ip.rsplit('.', 1)[1]}"


def short(az: str) -> str:
    return az.removeprefix("use1-")


def topology(settings: Settings) -> Topology:
    """Nodes and processes for ``settings`` (ports and fleet size come from there)."""
    nodes = [Node("regional", REGIONAL_ADDRESS, (REDIS_ADDRESS,))]
    nodes += [Node(az, az_address(az), tuple(lb_address(lb.ip) for lb in fleet(settings)
                                             if lb.az == az), az)
              for az in AZS]
    port = settings.metrics_port
    processes = [
        Process("redis", "regional", ()),
        Process("planner", "regional", ("planner",), port("planner"), port("planner")),
        Process("dns", "regional", ("dns",), port("dns"), port("dns")),
        Process("control", "regional", ("control",), settings.control_port,
                settings.control_port),
    ]
    for i, az in enumerate(AZS):
        s = short(az)
        enactor = port("enactor", i)
        endpoints = port("endpoints")
        endpoints_host = (endpoints if i == 0 else
                          settings.metrics_port_base + EXTRA_ENDPOINTS_PORT_OFFSET + i - 1)
        loadgen = settings.metrics_port_base + LOADGEN_PORT_OFFSET + i
        rate = f"{settings.load_rate / len(AZS):g}"
        clients = str(fleet_share(settings.load_clients, len(AZS), i))
        processes += [
            Process(f"enactor_{s}", az, ("enactor", "--az", az), enactor, enactor, az),
            Process(f"endpoints_{s}", az, ("endpoints", "--az", az), endpoints,
                    endpoints_host, az),
            Process(f"loadgen_{s}", az, ("loadgen", "--rate", rate, "--clients", clients,
                                         "--metrics-port", str(loadgen)), loadgen, loadgen, az),
        ]
    return Topology(tuple(nodes), tuple(processes))


def fleet_share(clients: int, loadgens: int, index: int) -> int:
    """Virtual clients of load generator ``index`` of ``loadgens``: the fleet split evenly."""
    return clients // loadgens + (1 if index < clients % loadgens else 0)


def inner_changes(settings: Settings, placement: Placement = "netns") -> dict[str, str | int]:
    """How the processes of an isolated cluster differ from ``settings``: peers by address.

    Redis and DNS are reached over the bridge; the control service listens on the regional
    node's loopback under ``netns`` (the host reaches it through the relay, no token needed)
    and on the regional address under ``compose`` (published to the host, token required).
    """
    return {
        "redis_url": f"redis://{REDIS_ADDRESS}:{settings.redis_port}/0",
        "dns_host": REGIONAL_ADDRESS,
        "dns_port": DNS_PORT,
        "lb_network": LB_NETWORK,
        "control_host": "127.0.0.1" if placement == "netns" else REGIONAL_ADDRESS,
    }


def inner_settings(settings: Settings, placement: Placement = "netns") -> Settings:
    """What the processes of an isolated cluster run with (see :func:`inner_changes`)."""
    return settings.replace(**inner_changes(settings, placement))


def outer_settings(settings: Settings) -> Settings:
    """What the host uses: the usual loopback ports (relayed into the namespaces)."""
    return settings.replace(lb_network=LB_NETWORK)
