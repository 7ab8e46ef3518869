"""The cheapest Python DNS responder: what any Python server pays per query, as a floor.

``python -m bench.floor_server MODE ANSWERS_JSON PORT`` answers, on 127.0.0.1 UDP, the A
records of every endpoint in ``ANSWERS_JSON`` (from :func:`bench.zonedata.export`, as the
dnslib server does), with none of a real server's work: no zone to follow, no metrics, no
sampler, no TCP. A reply is built once per distinct query (everything after the id) with
dnslib and kept in a dict; every later query costs one dict lookup and one concatenation
(the query's id and the kept reply). A query that does not parse is dropped.

``MODE``:

- ``uvloop``: one ``recvfrom_into`` per readable event on a uvloop loop, as our server takes
  datagrams that come one at a time (``dns_server.udp_batch``);
- ``blocking``: a blocking ``recvfrom_into`` and ``sendto`` in a plain loop, no event loop:
  a thread of its own, the cheapest wake-up Python has.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import uvloop
from dnslib import QTYPE, RR, A, DNSError, DNSRecord

MODES = ("uvloop", "blocking")

Respond = Callable[[bytes], "bytes | None"]


def responder(answers: dict[str, list[str]], ttl: int) -> Respond:
    """Query bytes to reply bytes (None: drop), a reply built once per distinct query."""
    kept: dict[bytes, bytes] = {}

    def respond(query: bytes) -> bytes | None:
        tail = kept.get(query[2:])
        if tail is None:
            try:
                request = DNSRecord.parse(query)
            except (DNSError, IndexError, ValueError):
                return None
            reply = request.reply()
            qname = request.q.qname
            for ip in answers.get(str(qname).rstrip(".").lower(), ()):
                reply.add_answer(RR(qname, QTYPE.A, ttl=ttl, rdata=A(ip)))
            tail = kept[query[2:]] = reply.pack()[2:]
        return query[:2] + tail

    return respond


def serve_blocking(sock: socket.socket, respond: Respond) -> None:
    buffer = bytearray(65_536)
    view = memoryview(buffer)
    while True:
        size, peer = sock.recvfrom_into(buffer)
        reply = respond(view[:size].tobytes())
        if reply is not None:
            sock.sendto(reply, peer)


def serve_uvloop(sock: socket.socket, respond: Respond) -> None:
    sock.setblocking(False)
    buffer = bytearray(65_536)
    view = memoryview(buffer)

    def readable() -> None:
        try:
            size, peer = sock.recvfrom_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        reply = respond(view[:size].tobytes())
        if reply is not None:
            sock.sendto(reply, peer)

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.add_reader(sock.fileno(), readable)
    loop.run_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in MODES:
        print(f"usage: python -m bench.floor_server {{{','.join(MODES)}}} ANSWERS_JSON PORT",
              file=sys.stderr)
        return 2
    data = json.loads(Path(argv[1]).read_text())
    respond = responder(data["answers"], int(data["ttl"]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", int(argv[2])))
    (serve_blocking if argv[0] == "blocking" else serve_uvloop)(sock, respond)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
