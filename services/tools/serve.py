"""The cluster's own processes, one ``dnsrace`` command each: the Procfile's lines.

Each handler imports its service module only when it runs (see ``services.tools.cli``): an
enactor must not load the NLB, nor Network Manager the planner.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from services.config import Settings
from services.core.names import AZS

Handler = Callable[[argparse.Namespace, Settings], int]
Add = Callable[[str, Handler, str], argparse.ArgumentParser]


SERVICE_MODULES = {
    "planner": "services.planner.service",
    "enactor": "services.enactor.service",
    "dns": "dns_server.server",
    "endpoints": "services.fleet.endpoints",
    "control": "services.control.service",
    "ec2-api": "services.ec2.api",
    "resolver": "services.runtime.resolver_service",
    "netmgr": "services.ec2.netmgr",
    "instances": "services.ec2.instances",
    "service-load": "loadgen.service_load",
}


def _serve(role: str) -> Handler:
    """A handler that runs the ``serve`` of one service module until SIGTERM."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        from services.runtime.service import run_service

        serve = importlib.import_module(SERVICE_MODULES[role]).serve
        return run_service(serve, settings, role, getattr(args, "az", None))

    return run


def cmd_dwfm(args: argparse.Namespace, settings: Settings) -> int:
    from services.ec2.host import serve
    from services.runtime.service import ServiceContext, run_service

    if not 1 <= args.host <= settings.dwfm_hosts:
        print(f"dnsrace dwfm: --host must be between 1 and DNSRACE_DWFM_HOSTS "
              f"({settings.dwfm_hosts})", file=sys.stderr)
        return 2

    async def host(ctx: ServiceContext) -> None:
        await serve(ctx, args.host)

    return run_service(host, settings, f"dwfm_{args.host}")


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    """The Procfile's Redis: the embedded server, or a placeholder when an external one is set."""
    from services.runtime.redis_server import exec_foreground

    if settings.embedded_redis:
        exec_foreground(settings.redis_port, Path(settings.state_dir) / "redis")
    print(f"using the Redis at {settings.redis_url}; no embedded server started", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


def cmd_nlb(args: argparse.Namespace, settings: Settings) -> int:
    from services.tools.nlb import command

    return command(args, settings)


def add_commands(add: Add) -> None:
    """Register one command per cluster process (``add(name, handler, help)``)."""
    add("redis", cmd_redis, "run the embedded Redis in the foreground (Procfile entry)")
    add("planner", _serve("planner"), "run the DNS Planner")
    enactor = add("enactor", _serve("enactor"), "run the DNS Enactor of one AZ")
    enactor.add_argument("--az", required=True, choices=AZS, help="Availability Zone")
    add("dns", _serve("dns"), "run the authoritative DNS server")
    endpoints = add("endpoints", _serve("endpoints"),
                    "run the load-balancer fleet (DynamoDB JSON API)")
    endpoints.add_argument("--az", choices=AZS,
                           help="serve only this AZ's load balancers (dnsrace up --isolate)")
    add("control", _serve("control"), "run the control service (fault API)")
    add("ec2-api", _serve("ec2-api"), "run EC2's launch API (RunInstances on leased droplets)")
    add("resolver", _serve("resolver"), "run Unbound as the clients' resolver (DNSRACE_RESOLVER)")
    add("netmgr", _serve("netmgr"), "run Network Manager: instances' network-state propagation")
    add("instances", _serve("instances"), "run one AZ's instances, each a listener of its own"
        ).add_argument("--az", required=True, choices=AZS, help="Availability Zone")
    nlb = add("nlb", cmd_nlb, "the NLB: 'serve' runs it, 'failover off|on'")
    action = nlb.add_subparsers(dest="action", required=True, metavar="ACTION")
    action.add_parser("failover", help="turn the NLB's automatic AZ DNS failover off or on"
                      ).add_argument("state", choices=("off", "on"))
    action.add_parser("serve", help="run the NLB process (AZ nodes, health checks, failover)")
    add("service-load", _serve("service-load"),
        "run the service's clients: calls to the NLB through its DNS name")
    dwfm = add("dwfm", cmd_dwfm, "run one DWFM host: droplet leases in DynamoDB")
    dwfm.add_argument("--host", type=int, required=True,
                      help="host number, 1 to DNSRACE_DWFM_HOSTS")
