"""A container's entry point: relay the process's ports from the container's addresses, run it.

``python -m services.containers.entry --address 198.19.0.2 --serve 53/udp --serve 9514 --
dnsrace dns``: every ``--serve`` port of 127.0.0.1 (where the process listens, as on a laptop)
is relayed from every ``--address`` of the container, then the command runs; SIGTERM and
SIGINT are passed on to it, and the entry point exits with its exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.containers.entry")
    parser.add_argument("--address", action="append", default=[])
    parser.add_argument("--serve", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    if command == ["dnsrace", "redis"] and args.address:
        command = redis_command(args.address[0])
    with Relay(routes(args.address, args.serve)):
        child = subprocess.Popen(command)

        def forward(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, forward)
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
