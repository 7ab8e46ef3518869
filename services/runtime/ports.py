"""Free loopback ports for the processes a test or a tool starts.

A port is chosen below the kernel's ephemeral range (``ip_local_port_range``, from 32768 by
default) and checked free for both TCP and UDP. A port the kernel handed out with ``bind(0)``
lies inside that range, so any outgoing connection or UDP query of the cluster being started
could take it before its server binds it: CI saw the DNS server exit on such a collision.
"""

from __future__ import annotations

import random
import socket
from collections import deque

from services.errors import DnsraceError

LOW, HIGH = 10000, 19900          # below the ephemeral range (32768 and up by default)
_recent: deque[int] = deque(maxlen=2000)   # handed out by this process, maybe not yet bound
_rng = random.Random()


class NoFreePort(DnsraceError, RuntimeError):
    pass


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``port`` binds for TCP and for UDP on ``host`` right now."""
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as probe:
                probe.bind((host, port))
    except OSError:
        return False
    return True


def free_port(span: int = 1) -> int:
    """A port such that it and the ``span - 1`` after it are free for TCP and UDP."""
    for _ in range(500):
        port = _rng.randrange(LOW, HIGH - span)
        run = range(port, port + span)
        if any(p in _recent for p in run) or not all(is_free(p) for p in run):
            continue
        _recent.extend(run)
        return port
    raise NoFreePort(f"no {span} consecutive free ports between {LOW} and {HIGH} on 127.0.0.1; "
                     "stop leftover dnsrace processes (Ctrl-C in their dnsrace up) and try again")


METRICS_SPAN = 32
"""Ports above ``metrics_port_base`` the processes use (Settings.metrics_port: +0 to +24, plus
an index): a base from ``metrics_port_base()`` has all of them free."""


def metrics_port_base() -> int:
    return free_port(span=METRICS_SPAN)
