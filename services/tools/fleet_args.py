"""``--clients N``, ``--other-share`` and ``--resolver`` on ``dnsrace demo`` and ``dnsrace run``:
the size of the client fleet, which endpoints it asks, and what it resolves through."""

from __future__ import annotations

import argparse
import shutil
import sys

from services.config import Settings

DEMO_CLIENTS = 1000
"""The demo's fleet unless ``--clients`` or ``DNSRACE_LOAD_CLIENTS`` says otherwise."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clients", type=_clients, metavar="N",
        help="virtual clients, each with its own DNS cache, address choice and SDK retries "
             "(DNSRACE_LOAD_CLIENTS; 0: one shared stub cache as before)")
    parser.add_argument(
        "--other-share", type=_share, metavar="SHARE",
        help="share of requests (0 to 1) sent to the FIPS endpoint and the account cells in "
             "turn; the rest ask the regional name (DNSRACE_LOAD_OTHER_SHARE, default 0)")
    parser.add_argument(
        "--resolver", choices=("stub", "unbound"),
        help="stub: each client asks our DNS server; unbound: through a real caching resolver "
             "(Debian package 'unbound'; DNSRACE_RESOLVER, default stub)")


def apply(args: argparse.Namespace, settings: Settings, default: int | None = None) -> Settings:
    """``settings`` with the fleet size asked for; ``default`` if neither flag nor setting."""
    clients = getattr(args, "clients", None)
    if clients is None:
        clients = settings.load_clients or (default or 0)
    resolver = getattr(args, "resolver", None) or settings.resolver
    share = getattr(args, "other_share", None)
    share = settings.load_other_share if share is None else share
    return settings.replace(load_clients=clients, resolver=resolver, load_other_share=share)


def check(settings: Settings) -> str | None:
    """What stops the run before it starts (Unbound asked for but missing), or None."""
    if settings.resolver == "unbound" and not shutil.which("unbound"):
        return ("--resolver unbound needs Unbound: apt-get install unbound, or use "
                "--resolver stub")
    return None


def _clients(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--clients takes a whole number, got {text!r}") from None
    if not 0 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"--clients must be between 0 and 100000, got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--other-share takes a number from 0 to 1, got "
                                         f"{text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"--other-share must be from 0 to 1, got {value:g}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``dnsrace run``'s own: the fleet's, and ``--json``."""
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", dest="as_json",
                        help="print the outcome as one JSON object (resolver, clients, failing)")


def prepare(args: argparse.Namespace, settings: Settings, command: str) -> Settings | None:
    """The settings for ``dnsrace demo|run``, or None after saying on stderr what is wrong."""
    settings = apply(args, settings, DEMO_CLIENTS if command == "demo" else None)
    if (problem := check(settings)) is not None:
        print(f"dnsrace {command}: {problem}", file=sys.stderr)
        return None
    return settings
