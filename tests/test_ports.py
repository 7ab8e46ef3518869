"""Ports handed to the processes a test or tool starts: never where the kernel picks the
ephemeral ports of the cluster's own outgoing connections (CI saw the DNS server lose its port
to one), free for UDP and TCP, and never handed out twice by one process."""

from __future__ import annotations

import socket
from pathlib import Path

from services import config
from services.runtime.ports import METRICS_SPAN, free_port, is_free, metrics_port_base


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_ports_are_below_the_ephemeral_range_and_free_for_tcp_and_udp() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)             # none handed out twice
    assert max(ports) < ephemeral_low()
    for port in ports[:20]:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind(("127.0.0.1", port))      # raises if it was not free


def test_a_span_is_free_end_to_end_and_a_taken_port_is_not_free() -> None:
    first = free_port(span=3)
    assert all(is_free(port) for port in range(first, first + 3))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", first))
        assert not is_free(first)                    # UDP alone taken is enough


def test_a_metrics_base_covers_every_process_s_metrics_port() -> None:
    settings = config.load({}, metrics_port_base=metrics_port_base())
    roles = ("planner", "enactor", "dns", "endpoints", "loadgen", "dwfm", "ec2_api", "netmgr",
             "nlb", "resolver", "supervisor", "instances", "service_load")
    highest = max(settings.metrics_port(role, 2) for role in roles)
    assert highest - settings.metrics_port_base < METRICS_SPAN
