"""Where every Procfile process runs under ``--containers``: its container, networks, addresses.

Pure: no engine is called here. :mod:`services.containers.engine` turns a :class:`Plan` into
``podman``/``docker`` commands, :mod:`services.containers.cluster` runs them.

Networks (all in 198.18.0.0/15, the benchmarking range of RFC 2544; ``isolate=true``, so that
the host routes nothing from one to another):

=================  ===============  ==================================================
network            subnet           who is in it
=================  ===============  ==================================================
dnsrace-regional   198.19.0.0/24    redis .3, dns .2, planner .10, control .11,
                                    dataplane .12 (endpoints, loadgen, dwfm, ec2_api,
                                    resolver share its network namespace)
dnsrace-use1-azN   198.19.N.0/24    redis .3, dns .2, enactor_azN .11 (its only network)
=================  ===============  ==================================================

Every process keeps listening on its container's 127.0.0.1 as it does on a laptop; the
container's entry point (:mod:`services.containers.entry`) relays the ports it serves from
each of the container's addresses to that loopback. Redis and DNS, the busy ones, listen on
their regional address themselves; only their addresses in the AZ networks are relayed.
The DNS server answers on port 53 of every network it is in, so each container's
resolv.conf (``--dns``) names our DNS server on its own network. Redis and DNS are reached by
each container at their address on its own network: an AZ is cut off (``az_partition``) by
disconnecting them from the AZ's network.

The data plane (the load balancers' endpoints, the load generator, DWFM, ec2_api, the
resolver) shares one network namespace, as the containers of a Kubernetes pod do: they reach
one another on 127.0.0.1 (the load balancers' 127.0.10.x addresses, ec2_api, DWFM), which is
how the processes are written. Each is still a container of its own.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

from honcho.environ import parse_procfile

from services.config import Settings
from services.core.names import AZS
from services.runtime.cluster import OUTAGE_PROCESSES, health_url
from services.runtime.topology import short

PREFIX = "dnsrace-"
LABEL = "dnsrace.containers"
"""Every container and network carries ``LABEL=1``: the sweep removes them by it."""
PROCESS_LABEL = "dnsrace.process"
REGIONAL_NETWORK = PREFIX + "regional"
DATAPLANE = "dataplane"
"""The container that only holds the data plane's network namespace (``sleep``)."""
DATAPLANE_PROCESSES = ("endpoints", "loadgen", "dwfm_", "ec2_api", "resolver")
"""Procfile entries (or prefixes) that join the data plane's network namespace."""
DNS_PORT = 53
STATE_DIR = "/var/lib/dnsrace"
"""The image's home of the ``dnsrace`` user: state (and Redis's files) inside a container."""
HOST_SUFFIX = {"redis": 3, "dns": 2, "planner": 10, "control": 11, DATAPLANE: 12}
ENACTOR_SUFFIX = 11


@dataclass(frozen=True)
class Network:
    name: str
    subnet: str
    gateway: str
    az: str | None = None

    def address(self, suffix: int) -> str:
        return self.subnet.rsplit(".", 1)[0] + f".{suffix}"


@dataclass(frozen=True)
class Serve:
    """A port the process listens on at 127.0.0.1, relayed from the container's addresses."""

    port: int
    udp: bool = False
    direct: bool = False
    """The process listens on the container's first address itself (Redis, DNS: the busy
    ones); only its other addresses are relayed, to that one."""

    def render(self) -> str:
        return f"{self.port}/{'udp' if self.udp else 'tcp'}{'/direct' if self.direct else ''}"


@dataclass(frozen=True)
class Container:
    name: str
    """The Procfile entry (``enactor_az1``), or ``dataplane``."""
    args: tuple[str, ...]
    """What runs inside (``dnsrace enactor --az use1-az1``)."""
    networks: tuple[tuple[str, str], ...] = ()
    """(network, address) pairs; empty when it joins the data plane's namespace."""
    joins: str | None = None
    """Another container whose network namespace it shares."""
    dns: str | None = None
    """Our DNS server's address on this container's (first) network: its resolv.conf."""
    env: dict[str, str] = field(default_factory=dict)
    """``DNSRACE_*`` settings that differ from the cluster's for this container."""
    serves: tuple[Serve, ...] = ()
    low_ports: bool = False
    """Needs to bind port 53 as the image's non-root user."""
    az: str | None = None

    @property
    def container_name(self) -> str:
        return PREFIX + self.name

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(address for _, address in self.networks)

    def address_on(self, network: str) -> str | None:
        return dict(self.networks).get(network)


@dataclass(frozen=True)
class Plan:
    networks: tuple[Network, ...]
    containers: tuple[Container, ...]

    def container(self, name: str) -> Container:
        for container in self.containers:
            if container.name == name:
                return container
        raise KeyError(f"no container for {name!r}; there are "
                       f"{', '.join(c.name for c in self.containers)}")

    def network(self, name: str) -> Network:
        for network in self.networks:
            if network.name == name:
                return network
        raise KeyError(name)

    def az_network(self, az: str) -> Network:
        for network in self.networks:
            if network.az == az:
                return network
        raise KeyError(f"no network for AZ {az!r}; AZs are {', '.join(AZS)}")

    def processes(self) -> tuple[Container, ...]:
        """The containers that run a Procfile process (not the data plane's holder)."""
        return tuple(c for c in self.containers if c.name != DATAPLANE)

    def shared(self) -> tuple[Container, ...]:
        """Containers in every AZ's network too (Redis, DNS): an AZ partition cuts them off."""
        return tuple(c for c in self.containers if len(c.networks) > 1)


def networks(base: int = 0, prefix: str = PREFIX) -> tuple[Network, ...]:
    """The regional network at 198.19.<base>.0/24, AZ N's at 198.19.<base + N>.0/24."""
    regional = Network(prefix + "regional", f"198.19.{base}.0/24", f"198.19.{base}.1")
    zonal = tuple(Network(f"{prefix}{az}", f"198.19.{base + _az_number(az)}.0/24",
                          f"198.19.{base + _az_number(az)}.1", az) for az in AZS)
    return (regional, *zonal)


def _az_number(az: str) -> int:
    return int(az.rsplit("az", 1)[1])


def procfile_args(text: str) -> dict[str, tuple[str, ...]]:
    """Procfile entries as argument lists, as written (``dnsrace ...``: the image has it);
    issue 15's processes (``OUTAGE_PROCESSES``, run by ``dnsrace outage``) left out, as the
    process cluster leaves them out of ``dnsrace up``."""
    return {name: tuple(shlex.split(process))
            for name, process in parse_procfile(text).processes.items()
            if name not in OUTAGE_PROCESSES}


def _serves(name: str, settings: Settings) -> tuple[Serve, ...]:
    serves = []
    if name == "redis":
        serves.append(Serve(settings.redis_port, direct=True))
    if name == "dns":
        serves += [Serve(DNS_PORT, direct=True), Serve(DNS_PORT, udp=True, direct=True)]
    url = health_url(name, settings)
    if url is not None:
        serves.append(Serve(int(url.rsplit(":", 1)[1].split("/")[0])))
    return tuple(serves)


def in_dataplane(name: str) -> bool:
    return any(name == p or (p.endswith("_") and name.startswith(p))
               for p in DATAPLANE_PROCESSES)


def plan(settings: Settings, procfile: str, nets: tuple[Network, ...] | None = None) -> Plan:
    """Containers for every entry of ``procfile`` (see the module's table)."""
    nets = nets or networks()
    regional = nets[0]
    everywhere = tuple((n.name, n.address(HOST_SUFFIX["redis"])) for n in nets)
    redis_at = {n.name: n.address(HOST_SUFFIX["redis"]) for n in nets}
    dns_at = {n.name: n.address(HOST_SUFFIX["dns"]) for n in nets}

    def peers(network: str) -> dict[str, str]:
        return {"DNSRACE_REDIS_URL": f"redis://{redis_at[network]}:{settings.redis_port}/0",
                "DNSRACE_DNS_HOST": dns_at[network]}

    containers = [Container(DATAPLANE, ("sleep", "infinity"),
                            ((regional.name, regional.address(HOST_SUFFIX[DATAPLANE])),),
                            dns=dns_at[regional.name])]
    for name, args in procfile_args(procfile).items():
        serves = _serves(name, settings)
        if name == "redis":
            containers.append(Container(name, args, everywhere, env={"DNSRACE_REDIS_URL": ""},
                                        serves=serves))
        elif name == "dns":
            dns_everywhere = tuple((n.name, dns_at[n.name]) for n in nets)
            env = {**peers(regional.name), "DNSRACE_DNS_HOST": dns_at[regional.name]}
            containers.append(Container(name, args, dns_everywhere, env=env, serves=serves,
                                        low_ports=True))
        elif name.startswith("enactor_"):
            az = next(az for az in AZS if short(az) == name.removeprefix("enactor_"))
            network = next(n.name for n in nets if n.az == az)
            address = dict((n.name, n) for n in nets)[network].address(ENACTOR_SUFFIX)
            containers.append(Container(name, args, ((network, address),), dns=dns_at[network],
                                        env=peers(network), serves=serves, az=az))
        elif in_dataplane(name):
            containers.append(Container(name, args, joins=PREFIX + DATAPLANE,
                                        env=peers(regional.name), serves=serves))
        else:
            suffix = HOST_SUFFIX.get(name)
            if suffix is None:
                raise ValueError(f"Procfile entry {name!r} has no place in a container network; "
                                 "add it to services/containers/plan.py")
            containers.append(Container(name, args, ((regional.name, regional.address(suffix)),),
                                        dns=dns_at[regional.name], env=peers(regional.name),
                                        serves=serves))
    return Plan(nets, tuple(containers))


def mac_of(address: str) -> str:
    """The container's MAC on the network where it has ``address``: locally administered and
    made of the address, as Docker's were. Fixed, so that a container put back on a network
    after a partition (``network connect``) keeps it: the AZ's containers' neighbour caches
    stay right. With a new random MAC they kept sending to the old one until their entry
    failed, 24-45 s after the heal (a dig inside the AZ's enactor timing out all along)."""
    octets = ipaddress.IPv4Address(address).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


def address_of(plan: Plan, container: Container) -> str:
    """Where the host reaches a container: its address on its first network (or its holder's)."""
    if container.joins is not None:
        return address_of(plan, plan.container(container.joins.removeprefix(PREFIX)))
    return container.networks[0][1]
