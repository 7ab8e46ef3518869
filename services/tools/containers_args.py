"""``--containers``, ``--image`` and ``--engine`` on ``dnsrace up`` and ``dnsrace demo``.

Declared apart from the commands so that building the CLI's parser imports nothing of the
container harness (services/containers/)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

DEFAULT_IMAGE = "dnsrace"


@dataclass(frozen=True)
class ContainerOptions:
    image: str
    engine: str | None
    """podman or docker; None: podman if installed, else docker."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--containers", action="store_true",
        help="every process in a container of its own from the project image, one container "
             "network per AZ plus a regional one (podman, or docker; docs/containers.md)")
    parser.add_argument("--image", default=DEFAULT_IMAGE,
                        help=f"the image --containers runs (default {DEFAULT_IMAGE!r}: "
                             "'podman build -t dnsrace .')")
    parser.add_argument("--engine", choices=("podman", "docker"),
                        help="container engine (default: podman if installed, else docker)")


def options(args: argparse.Namespace) -> ContainerOptions | None:
    """What ``--containers`` asked for, or None without it."""
    if not getattr(args, "containers", False):
        return None
    return ContainerOptions(args.image, args.engine)
