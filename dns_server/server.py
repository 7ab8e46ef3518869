"""The authoritative DNS server process: sockets, zone sync, /metrics and /healthz.

``DnsServer`` is the embeddable object (tests start it on a free port against their own
Redis and key prefix); :func:`serve` is the process entry point used by ``python -m
dns_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import random
import socket
from types import TracebackType

from redis.exceptions import RedisError

from dns_server import fastpath, metrics
from dns_server.answer import AnswerPolicy
from dns_server.cache import ReplyCache
from dns_server.engine import ReplyEngine
from dns_server.errors import ListenAddressError
from dns_server.fastpath import FastPath
from dns_server.sampling import AnswerSampler
from dns_server.sync import SYNC_RETRY, ZoneSync
from dns_server.transport import TcpConnections, TcpDnsProtocol, TcpLimits, UdpDnsProtocol
from dns_server.udp_batch import UdpBatchServer, available
from dns_server.zone import Zone
from services.config import ISOLATION_RANGE, Settings
from services.runtime.clock import WALL_CLOCK
from services.runtime.service import (
    PortInUse,
    ServiceContext,
    observability_app,
    redis_client,
    run_until_stopped,
    start_site,
)
from services.runtime.swallowed import swallowed
from services.store import history
from services.store.zone import ZoneKeys, ZoneStore, ensure_apex

log = logging.getLogger(__name__)
APEX_ERRORS = swallowed("zone_apex")

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
"""Bytes of kernel buffer for queries that arrive in a burst (best effort)."""


def loopback_host(host: str) -> str:
    """The address to bind; refuses anything but loopback or an isolated namespace's address
    (we are not a public server)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ListenAddressError(f"DNSRACE_DNS_HOST={host!r} is not an IP address") from None
    if not (address.is_loopback or address in ISOLATION_RANGE):
        raise ListenAddressError(f"DNSRACE_DNS_HOST={host!r} is neither a loopback address nor "
                                 "in 198.18.0.0/15 (the --isolate namespaces)")
    return host


class DnsServer:
    """UDP and TCP on one loopback port, answering from a zone followed in Redis."""

    def __init__(self, settings: Settings, *, keys: ZoneKeys | None = None,
                 redis_url: str | None = None, port: int | None = None,
                 rng: random.Random | None = None,
                 tcp_limits: TcpLimits | None = None) -> None:
        self.host = loopback_host(settings.dns_host)
        self.port = settings.dns_port if port is None else port
        """The bound port once started (``port=0`` picks a free one)."""
        self.engine = ReplyEngine(AnswerPolicy(ttl_s=settings.ttl_s), rng,
                                  ReplyCache(settings.dns_cache_entries))
        self.sync = ZoneSync(redis_url or settings.effective_redis_url, keys,
                             listener=self._zone_changed)
        self._tcp_connections = TcpConnections(tcp_limits or TcpLimits())
        self.fast_path = settings.dns_fast_path and fastpath.available()
        """UDP is read by the compiled fast path (:mod:`dns_server.fastpath`)."""
        self.udp_batch = (max(1, settings.dns_udp_batch) if self.fast_path
                          else settings.dns_udp_batch if available() else 0)
        """Datagrams per recvmmsg; 0 when UDP goes through the asyncio transport."""
        self._udp: asyncio.DatagramTransport | UdpBatchServer | FastPath | None = None
        self._udp_closed: asyncio.Future[None] | None = None
        self._tcp: asyncio.Server | None = None
        self._sync_task: asyncio.Task[None] | None = None

    @property
    def zone(self) -> Zone | None:
        return self.sync.zone

    @property
    def tcp_connections(self) -> int:
        return len(self._tcp_connections.open)

    def _zone_changed(self, zone: Zone, names: frozenset[str] | None) -> None:
        if names is None:
            self.engine.set_zone(zone)
        else:
            self.engine.zone_changed(names)

    async def start(self) -> None:
        """Bind UDP and TCP and start following the zone (answers SERVFAIL until loaded)."""
        for _ in range(20 if self.port == 0 else 1):
            udp = self._udp_socket(self.port)
            try:
                await self._listen(udp)
                break
            except OSError:
                udp.close()
                if self.port != 0:
                    raise
        else:  # pragma: no cover - twenty ports in a row taken for TCP but free for UDP
            raise OSError("no free port for both UDP and TCP")
        self._sync_task = asyncio.create_task(self.sync.run(), name="zone-sync")
        log.info("DNS listening on %s port %d (UDP %s, and TCP)", self.host, self.port,
                 ("on the compiled fast path, " if self.fast_path else "")
                 + (f"in batches of up to {self.udp_batch}" if self.udp_batch else "one by one"))

    def _udp_socket(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    async def _listen(self, udp: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        port = int(udp.getsockname()[1])
        engine = self.engine
        tcp = await loop.create_server(
            lambda: TcpDnsProtocol(engine, self._tcp_connections), self.host, port,
            reuse_address=True, backlog=1024,
        )
        try:
            if self.fast_path:
                fast = FastPath(udp, engine.respond, self.udp_batch)
                engine.cache.mirror = fast.mirror
                metrics.BEFORE_COLLECT.append(fast.mirror.fold)
                fast.start()
                assert fast.closed is not None
                self._udp, self._udp_closed = fast, fast.closed
            elif self.udp_batch:
                batched = UdpBatchServer(udp, engine.respond, self.udp_batch)
                batched.start()
                assert batched.closed is not None
                self._udp, self._udp_closed = batched, batched.closed
            else:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: UdpDnsProtocol(engine), sock=udp)
                self._udp, self._udp_closed = transport, protocol.closed
        except BaseException:
            tcp.close()
            raise
        self._tcp = tcp
        self.port = port

    async def wait_loaded(self, timeout_s: float | None = None) -> None:
        async with asyncio.timeout(timeout_s):
            await self.sync.loaded.wait()

    async def wait_for_serial(self, serial: int, timeout_s: float | None = None) -> None:
        """Return once answers come from zone serial ``serial`` or later."""
        await self.sync.wait_for_serial(serial, timeout_s)

    async def following(self) -> None:
        """Until cancelled, wait on the zone sync; raise its error at once if it fails.

        The sync counts, logs and retries every error of its own (it never ends by itself):
        what would end it is a bug, and a job of the process that awaits this surfaces it.
        """
        assert self._sync_task is not None, "start() the server first"
        await asyncio.shield(self._sync_task)

    async def stop(self) -> None:
        """Stop following the zone and close every socket; raise the zone sync's error if it
        failed (rather than ended because it was stopped)."""
        sync, self._sync_task = self._sync_task, None
        if sync is not None:
            sync.cancel()
            await asyncio.wait([sync])
        if self._udp is not None and self._udp_closed is not None:
            self._udp.close()
            await self._udp_closed
            if isinstance(self._udp, FastPath):
                metrics.BEFORE_COLLECT.remove(self._udp.mirror.fold)
                self.engine.cache.mirror = None
            self._udp = self._udp_closed = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp_connections.close_all()
            await self._tcp.wait_closed()
            self._tcp = None
        failure = None if sync is None or sync.cancelled() else sync.exception()
        if failure is not None:
            raise failure

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


async def _ensure_apex(settings: Settings, stopping: asyncio.Event) -> None:
    """Create the zone's SOA and NS unless present, retrying until Redis answers."""
    client = redis_client(settings)
    attempt = 0
    try:
        while not stopping.is_set():
            try:
                await ensure_apex(ZoneStore(client, clock=WALL_CLOCK), settings.ttl_s,
                                  settings.negative_ttl_s)
                return
            except (RedisError, OSError) as e:
                attempt += 1
                APEX_ERRORS.inc()
                log.warning("cannot create the zone apex yet: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), SYNC_RETRY.delay(attempt))
    finally:
        await client.aclose()


async def _ready_once_loaded(ctx: ServiceContext, server: DnsServer) -> None:
    await server.sync.loaded.wait()
    # The loaded zone and the process's modules live as long as the process: keep the cyclic
    # collector from scanning them again and again under query load.
    gc.freeze()
    ctx.ready = True
    log.info("zone loaded at serial %s; ready", server.sync.serial)


async def serve(ctx: ServiceContext) -> None:
    """Run the DNS server until ``ctx.stopping`` is set; ready once the zone is loaded.

    Its jobs (the apex, the answer samples, readiness, the zone sync) run in one task group:
    the failure of any ends the process with its error.
    """
    settings = ctx.settings
    history_client = redis_client(settings)
    server = DnsServer(settings)
    sampler = AnswerSampler(history.RedisHistory(history_client, source="dns", clock=WALL_CLOCK),
                            server.engine.take_served)
    runner = await start_site(observability_app(ctx), "127.0.0.1", settings.metrics_port("dns"))
    try:
        try:
            await server.start()
        except OSError as e:
            raise PortInUse(f"cannot listen for DNS on {server.host} port {server.port} "
                            f"({e.strerror}); is another dnsrace cluster or DNS server "
                            "running? Stop it, or move this one with DNSRACE_DNS_PORT") from e
        await run_until_stopped(ctx, _ensure_apex(settings, ctx.stopping), sampler.drain(),
                                sampler.sampling(), _ready_once_loaded(ctx, server),
                                server.following())
    finally:
        await server.stop()
        await runner.cleanup()
        await history_client.aclose()
