"""``--clients N`` on ``dnsrace demo`` and ``dnsrace run``: the size of the client fleet."""

from __future__ import annotations

import argparse

from services.config import Settings

DEMO_CLIENTS = 1000
"""The demo's fleet unless ``--clients`` or ``DNSRACE_LOAD_CLIENTS`` says otherwise."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clients", type=_clients, metavar="N",
        help="virtual clients, each with its own DNS cache, address choice and SDK retries "
             "(DNSRACE_LOAD_CLIENTS; 0: one shared stub cache as before)")


def apply(args: argparse.Namespace, settings: Settings, default: int | None = None) -> Settings:
    """``settings`` with the fleet size asked for; ``default`` if neither flag nor setting."""
    clients = getattr(args, "clients", None)
    if clients is None:
        clients = settings.load_clients or (default or 0)
    return settings.replace(load_clients=clients)


def _clients(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--clients takes a whole number, got {text!r}") from None
    if not 0 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"--clients must be between 0 and 100000, got {value}")
    return value
