"""``python -m dns_server``: the authoritative DNS server as its own process."""

from __future__ import annotations

import sys

from dns_server.server import serve
from services.config import load
from services.runtime.service import run_service


def main() -> int:
    return run_service(serve, load(), "dns")


if __name__ == "__main__":
    sys.exit(main())
