"""A minimal stub client over UDP and TCP: one question, one reply, with a deadline.

For tests and tools (loadgen, the checker); it speaks bytes and leaves parsing to dnslib.
"""

from __future__ import annotations

import asyncio
import socket


async def query_udp(wire: bytes, host: str, port: int, timeout_s: float = 2.0) -> bytes:
    """Send one query and return the first datagram that comes back."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, wire)
        async with asyncio.timeout(timeout_s):
            return await loop.sock_recv(sock, 65535)


async def read_tcp_message(reader: asyncio.StreamReader) -> bytes:
    """One length-prefixed DNS message (raises IncompleteReadError at end of stream)."""
    size = int.from_bytes(await reader.readexactly(2), "big")
    return await reader.readexactly(size)


def tcp_frame(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


async def query_tcp(wire: bytes, host: str, port: int, timeout_s: float = 2.0) -> bytes:
    """Send one query on a fresh TCP connection and return the reply."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(tcp_frame(wire))
            await writer.drain()
            return await read_tcp_message(reader)
        finally:
            writer.close()
            await writer.wait_closed()
