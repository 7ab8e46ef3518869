"""UDP and TCP for the DNS server: bytes in, ``ReplyEngine.respond``, bytes out.

TCP (RFC 7766): two-byte length framing, any number of queries per connection, an idle
timeout counted from the last complete query, a cap on open connections, and back-pressure:
a client that does not read its replies stops being read, so it can only slow itself.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast

from dns_server import metrics
from dns_server.engine import ReplyEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TcpLimits:
    max_connections: int = 256
    """Connections beyond this many are closed at once."""
    idle_timeout_s: float = 10.0
    """A connection with no complete query for this long is closed."""


class UdpDnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, engine: ReplyEngine) -> None:
        self._respond = engine.respond
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._sendto = self.transport.sendto

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self._respond(data, False)
        if reply is not None:
            self._sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class TcpConnections:
    """The open TCP connections of one server, so that stop() can close them."""

    def __init__(self, limits: TcpLimits) -> None:
        self.limits = limits
        self.open: set[TcpDnsProtocol] = set()

    def close_all(self) -> None:
        for connection in list(self.open):
            connection.abort()


class TcpDnsProtocol(asyncio.Protocol):
    def __init__(self, engine: ReplyEngine, connections: TcpConnections) -> None:
        self._engine = engine
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._loop = asyncio.get_running_loop()
        self._last_query = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self._connections.open) >= self._connections.limits.max_connections:
            metrics.TCP_REJECTED.inc()
            cast(asyncio.Transport, transport).abort()
            return
        self._transport = cast(asyncio.Transport, transport)
        self._connections.open.add(self)
        metrics.TCP_CONNECTIONS.inc()
        self._timer = self._loop.call_later(self._connections.limits.idle_timeout_s,
                                            self._check_idle)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            size = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + size:
                break
            message = bytes(buffer[2:2 + size])
            del buffer[:2 + size]
            self._last_query = self._loop.time()
            reply = self._engine.respond(message, True)
            if reply is not None:
                transport.write(len(reply).to_bytes(2, "big") + reply)

    def eof_received(self) -> bool:
        return False  # close once the replies already written are flushed

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _check_idle(self) -> None:
        if self._transport is None:
            return
        idle = self._loop.time() - self._last_query
        timeout = self._connections.limits.idle_timeout_s
        if idle >= timeout:
            metrics.TCP_IDLE_CLOSED.inc()
            self._transport.abort()
        else:
            self._timer = self._loop.call_later(timeout - idle, self._check_idle)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport = None
            self._connections.open.discard(self)
            metrics.TCP_CONNECTIONS.dec()
