"""A container's entry point: relay the process's ports from the container's addresses, run it.

``python -m services.containers.entry --address 198.19.0.2 --serve 53/udp --serve 9514 --
dnsrace dns``: every ``--serve`` port of 127.0.0.1 (where the process listens, as on a laptop)
is relayed from every ``--address`` of the container, then the command runs; SIGTERM and
SIGINT are passed on to it, and the entry point exits with its exit status.

Under Kubernetes (deploy/kubernetes/) the pod's address is not known in advance:
``--address auto`` is the address the pod's host name has (its /etc/hosts line), and peers
named by host name in ``DNSRACE_REDIS_URL`` and ``DNSRACE_DNS_HOST`` (the Services ``redis``
and ``dns``) are resolved to an address before the process starts, since it wants addresses.
``podman kube play`` runs no Services: its DNS knows a one-replica Deployment's pod as
``NAME-pod-0``, which is tried when ``NAME`` does not resolve.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from services import config
from services.isolate.relay import Relay, Route
from services.runtime.redis_server import server_args


def routes(addresses: list[str], serves: list[str]) -> list[Route]:
    """``9514/tcp`` on each address to the same port of 127.0.0.1; ``53/udp/direct`` (the
    process listens on the first address itself) on the other addresses, to the first."""
    found = []
    for serve in serves:
        port, kind, *direct = serve.split("/")
        target = addresses[0] if direct else "127.0.0.1"
        for address in addresses[1:] if direct else addresses:
            found.append(Route(int(port), target, int(port), udp=kind == "udp",
                               listen_host=address))
    return found


def redis_command(address: str) -> list[str]:
    """The embedded Redis, listening on the container's first address too (not protected:
    the networks it is on are the cluster's own)."""
    settings = config.load()
    args = server_args(settings.redis_port, Path(settings.state_dir) / "redis")
    at = args.index("--bind") + 1
    args[at:at + 1] = ["127.0.0.1", address]
    args[args.index("--protected-mode") + 1] = "no"
    (Path(settings.state_dir) / "redis").mkdir(parents=True, exist_ok=True)
    return args


PEER_WAIT_S = 120.0


def lookup(name: str) -> str | None:
    """``name``'s IPv4 address, or its ``podman kube play`` pod's (``NAME-pod-0``), or None."""
    for candidate in (name, f"{name}-pod-0"):
        with contextlib.suppress(OSError):
            return socket.gethostbyname(candidate)
    return None


def resolve_peers(environ: dict[str, str], wait_s: float = PEER_WAIT_S) -> dict[str, str]:
    """``environ`` with host names in the Redis URL and the DNS host replaced by addresses
    (waiting up to ``wait_s`` for a peer whose name is not known yet)."""
    out = dict(environ)
    url = urlsplit(out.get("DNSRACE_REDIS_URL", ""))
    wanted = {"DNSRACE_DNS_HOST": out.get("DNSRACE_DNS_HOST", ""),
              "DNSRACE_REDIS_URL": url.hostname or ""}
    deadline = time.monotonic() + wait_s
    for key, host in wanted.items():
        if not host or _is_address(host) or host == "localhost":
            continue
        while (address := lookup(host)) is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"entry: {key} names {host!r}, which does not resolve")
            time.sleep(0.5)
        if key == "DNSRACE_DNS_HOST":
            out[key] = address
        else:
            netloc = address + (f":{url.port}" if url.port else "")
            out[key] = urlunsplit(url._replace(netloc=netloc))
    return out


def wait_for_redis(environ: dict[str, str], wait_s: float = PEER_WAIT_S) -> None:
    """Until Redis accepts connections (or ``wait_s``): what compose's ``service_healthy``
    and Kubernetes's readiness would wait for, also where the engine does not (podman-compose
    on podman 4.3), so that no process starts, fails and restarts in a loop meanwhile."""
    url = urlsplit(environ.get("DNSRACE_REDIS_URL", ""))
    if not url.hostname:
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            socket.create_connection((url.hostname, url.port or 6379), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                return  # the process says what is wrong better than we can
            time.sleep(0.3)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.containers.entry")
    parser.add_argument("--address", action="append", default=[])
    parser.add_argument("--serve", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    addresses = [socket.gethostbyname(socket.gethostname()) if a == "auto" else a
                 for a in args.address]
    env = resolve_peers(dict(os.environ))
    os.environ.update(env)  # redis_command reads the settings
    if command == ["dnsrace", "redis"] and addresses:
        command = redis_command(addresses[0])
    else:
        wait_for_redis(env)
    with Relay(routes(addresses, args.serve)):
        child = subprocess.Popen(command, env=env)

        def forward(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, forward)
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
