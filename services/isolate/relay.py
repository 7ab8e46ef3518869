"""Relays: a port on one side, a service on the other, possibly inside a network namespace.

Under ``--isolate`` every process keeps serving /metrics and /healthz on its own namespace's
127.0.0.1, and the control service listens on the regional namespace's loopback. A relay on the
host's 127.0.0.1 makes each of them answer on its usual port there (and Redis and DNS too), so
every tool (``dnsrace status``, ``race``, ``watch``, Prometheus, the tests' monitor) works on
an isolated cluster with the settings it always uses.

Reaching a namespace's loopback takes a socket made inside that namespace: a worker thread
enters it once (``setns(2)`` changes only the calling thread's namespace) and makes sockets
there for the event loop, which then uses them like any other.

In a container the same relay publishes each process's loopback /metrics on the container's
address, for Prometheus.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import socket
import threading
import time
import typing
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
UDP_IDLE_S = 30.0
"""A client's upstream UDP socket is closed after this long without a datagram."""
Reply = Callable[[bytes], None]


def enter_namespace(namespace: str) -> None:
    """Move the calling thread into the named network namespace (root only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"{NETNS_DIR}/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Route:
    """``listen_host:listen_port`` relays to ``target_host:target_port`` (in ``namespace``)."""

    listen_port: int
    target_host: str
    target_port: int
    namespace: str | None = None
    udp: bool = False
    listen_host: str = "127.0.0.1"

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        kind = "udp" if self.udp else "tcp"
        return (f"{kind} {self.listen_host}:{self.listen_port} -> "
                f"{self.target_host}:{self.target_port}{where}")


class NamespaceSockets:
    """Sockets made inside named network namespaces, one worker thread per namespace."""

    def __init__(self) -> None:
        self._workers: dict[str, concurrent.futures.ThreadPoolExecutor] = {}

    def _worker(self, namespace: str) -> concurrent.futures.ThreadPoolExecutor:
        worker = self._workers.get(namespace)
        if worker is None:
            worker = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"netns-{namespace}", initializer=enter_namespace,
                initargs=(namespace,))
            self._workers[namespace] = worker
        return worker

    async def socket(self, namespace: str | None, kind: socket.SocketKind) -> socket.socket:
        if namespace is None:
            sock = socket.socket(socket.AF_INET, kind)
        else:
            try:
                sock = await asyncio.get_running_loop().run_in_executor(
                    self._worker(namespace), socket.socket, socket.AF_INET, kind)
            except concurrent.futures.BrokenExecutor as e:
                # The namespace was missing when the worker started; try afresh next time.
                self._workers.pop(namespace).shutdown(wait=False)
                raise OSError(f"cannot enter network namespace {namespace}") from e
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        for worker in self._workers.values():
            worker.shutdown(wait=False)
        self._workers.clear()


async def _splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                  b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Copy both ways until both sides are done; an error on either side ends both."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    tasks = [asyncio.ensure_future(pipe(a[0], b[1])), asyncio.ensure_future(pipe(b[0], a[1]))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, OSError)]
        if errors:
            log.debug("relayed connection ended: %s", errors[0])
        a[1].close()
        b[1].close()


class _Datagrams(asyncio.DatagramProtocol):
    """One UDP route: a socket per client towards the target, replies sent back to it."""

    def __init__(self, relay: Relay, route: Route) -> None:
        self.relay = relay
        self.route = route
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: dict[tuple[str, int], tuple[asyncio.DatagramTransport, float]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._spawn(self._forward(data, addr))

    async def _forward(self, data: bytes, client: tuple[str, int]) -> None:
        now = time.monotonic()
        for key, (transport, last) in list(self.upstream.items()):
            if now - last > UDP_IDLE_S:
                transport.close()
                del self.upstream[key]
        entry = self.upstream.get(client)
        if entry is None:
            sock = await self.relay.sockets.socket(self.route.namespace, socket.SOCK_DGRAM)
            sock.connect((self.route.target_host, self.route.target_port))
            reply_to = self._reply(client)
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Replies(reply_to), sock=sock)
            entry = (transport, now)
        self.upstream[client] = (entry[0], now)
        entry[0].sendto(data)

    def _reply(self, client: tuple[str, int]) -> Reply:
        def send(data: bytes) -> None:
            if self.transport is not None:
                self.transport.sendto(data, client)
        return send

    def close(self) -> None:
        for transport, _ in self.upstream.values():
            transport.close()
        self.upstream.clear()


class _Replies(asyncio.DatagramProtocol):
    def __init__(self, send: Reply) -> None:
        self.send = send

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.send(data)


@dataclass
class Relay:
    """Every route, served by one event loop in a thread of its own (start/stop from sync code)."""

    routes: list[Route]
    sockets: NamespaceSockets = field(default_factory=NamespaceSockets)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _closers: list[asyncio.AbstractServer | asyncio.BaseTransport | _Datagrams] = field(
        default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("relay: %s", task.exception())

    async def _stream(self, route: Route, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            sock = await self.sockets.socket(route.namespace, socket.SOCK_STREAM)
            try:
                await asyncio.get_running_loop().sock_connect(
                    sock, (route.target_host, route.target_port))
            except OSError:
                sock.close()
                raise
            upstream = await asyncio.open_connection(sock=sock)
        except OSError as e:
            log.debug("relay %s: %s", route.describe(), e)
            writer.close()
            return
        await _splice((reader, writer), upstream)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        for route in self.routes:
            if route.udp:
                protocol = _Datagrams(self, route)
                transport, _ = await loop.create_datagram_endpoint(
                    lambda p=protocol: p,  # type: ignore[misc]
                    local_addr=(route.listen_host, route.listen_port))
                self._closers += [protocol, transport]
            else:
                async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                 route: Route = route) -> None:
                    task = asyncio.current_task()
                    assert task is not None
                    self._tasks.add(task)  # so that stop() can end open connections
                    try:
                        await self._stream(route, reader, writer)
                    finally:
                        self._tasks.discard(task)

                server = await asyncio.start_server(handle, route.listen_host,
                                                    route.listen_port, reuse_address=True)
                self._closers.append(server)

    async def _close(self) -> None:
        for closer in self._closers:
            closer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closers.clear()

    def start(self, timeout_s: float = 5.0) -> Relay:
        """Listen on every route; OSError (e.g. a port in use) if one cannot be opened."""
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="dnsrace-relay",
                                        daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(5.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        loop.close()
        self.sockets.close()
        self._loop = self._thread = None

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
