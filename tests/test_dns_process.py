"""``python -m dns_server`` as its own process: ready, answering, observable, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
from dnslib import DNSRecord

from dns_server.client import query_udp
from services.core import names
from services.runtime.ports import free_port, metrics_port_base
from services.runtime.redis_server import EmbeddedRedis
from tests.conftest import REPO


async def test_process_serves_the_zone_and_stops_on_sigterm(redis_server: EmbeddedRedis,
                                                            tmp_path: Path) -> None:
    dns_port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(DNSRACE_REDIS_URL=redis_server.url, DNSRACE_DNS_PORT=str(dns_port),
               DNSRACE_METRICS_PORT_BASE=str(metrics_port - 4))
    log = (tmp_path / "dns.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dns_server", cwd=REPO, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=log,
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                while True:  # poll /healthz with a deadline: 503 until the zone is loaded
                    try:
                        async with http.get(f"http://127.0.0.1:{metrics_port}/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    assert process.returncode is None, (tmp_path / "dns.log").read_text()
                    await asyncio.sleep(0.05)
            reply = DNSRecord.parse(await query_udp(
                bytes(DNSRecord.question(names.ZONE, "SOA").pack()), "127.0.0.1", dns_port))
            assert reply.header.rcode == 0 and reply.header.aa == 1
            assert str(reply.rr[0].rdata.mname) == f"ns1.{names.ZONE}."  # apex made at start
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                text = await r.text()
        assert 'dnsrace_dns_queries_total{qtype="SOA",rcode="NOERROR"}' in text
        assert "dnsrace_dns_zone_serial" in text
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


async def test_a_taken_dns_port_is_one_clear_line_and_exit_2(redis_server: EmbeddedRedis,
                                                             tmp_path: Path) -> None:
    """Another server on the DNS port (UDP alone is enough): no traceback, what to do."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
    env.update(DNSRACE_REDIS_URL=redis_server.url, DNSRACE_DNS_PORT=str(port),
               DNSRACE_METRICS_PORT_BASE=str(metrics_port_base()))
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dns_server", cwd=REPO, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        taken.close()
    text = err.decode()
    assert process.returncode == 2, text
    assert f"cannot listen for DNS on 127.0.0.1 port {port}" in text
    assert "DNSRACE_DNS_PORT" in text and "Traceback" not in text
