"""Unbound as the clients' caching resolver (the VPC resolver's part in the outage).

Our DNS server is the authority for the zone (a stub zone); Unbound caches positive answers for
their TTL and empty ones for the SOA's negative TTL (RFC 2308), as the VPC resolver did.  It
listens on 127.0.0.1 on a port of its own, is controlled on a loopback port without
certificates, and reports its statistics through ``unbound-control stats_noreset``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from services.errors import DnsraceError

STUB_ZONE = "amazonaws.com"


class UnboundError(DnsraceError):
    """Unbound is missing, would not start, or would not answer its control port."""


@dataclass(frozen=True)
class UnboundConfig:
    port: int
    control_port: int
    authority_host: str
    authority_port: int
    directory: Path
    zone: str = STUB_ZONE

    @property
    def path(self) -> Path:
        return self.directory / "unbound.conf"

    def text(self) -> str:
        return "\n".join([
            "server:",
            "  interface: 127.0.0.1",
            f"  port: {self.port}",
            "  do-ip6: no",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{self.directory}"',
            f'  pidfile: "{self.directory / "unbound.pid"}"',
            "  use-syslog: no",
            '  logfile: ""',
            "  verbosity: 1",
            "  num-threads: 1",
            "  so-reuseport: no",
            "  access-control: 127.0.0.0/8 allow",
            "  do-not-query-localhost: no",
            '  module-config: "iterator"',
            "  qname-minimisation: no",
            "  prefetch: no",
            "  serve-expired: no",
            "  cache-min-ttl: 0",
            "  cache-max-negative-ttl: 3600",
            "  statistics-cumulative: yes",
            "  extended-statistics: yes",
            f'  domain-insecure: "{self.zone}"',
            "stub-zone:",
            f'  name: "{self.zone}"',
            f"  stub-addr: {self.authority_host}@{self.authority_port}",
            "remote-control:",
            "  control-enable: yes",
            "  control-interface: 127.0.0.1",
            f"  control-port: {self.control_port}",
            "  control-use-cert: no",
            "",
        ])

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.text())
        return self.path


def parse_stats(text: str) -> dict[str, float]:
    """``unbound-control stats`` output (``name=value`` lines) as numbers; other lines ignored."""
    stats: dict[str, float] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if not sep:
            continue
        try:
            stats[name] = float(value)
        except ValueError:
            continue
    return stats


def installed() -> bool:
    return shutil.which("unbound") is not None and shutil.which("unbound-control") is not None


class Unbound:
    """One Unbound process for a config; ``async with`` starts it and waits until it answers."""

    def __init__(self, config: UnboundConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Unbound:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self, timeout_s: float = 10.0) -> None:
        if not installed():
            raise UnboundError("unbound is not installed (apt-get install unbound), or choose "
                               "--resolver stub")
        path = self.config.write()
        log = (self.config.directory / "unbound.log").open("ab")
        self.process = subprocess.Popen(["unbound", "-d", "-c", str(path)], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise UnboundError(f"unbound exited with {self.process.returncode}; see "
                                   f"{self.config.directory / 'unbound.log'}")
            try:
                await self.stats()
                return
            except UnboundError:
                if time.monotonic() > deadline:
                    await self.stop()
                    raise
            await asyncio.sleep(0.05)

    async def stats(self) -> dict[str, float]:
        """Its statistics, without resetting them."""
        proc = await asyncio.create_subprocess_exec(
            "unbound-control", "-c", str(self.config.path), "stats_noreset",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise UnboundError(f"unbound-control failed: {out.decode(errors='replace').strip()}")
        return parse_stats(out.decode(errors="replace"))

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
