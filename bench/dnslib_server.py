"""dnslib's built-in ``DNSServer`` serving the benchmark zone: the baseline to beat 20x.

``python -m bench.dnslib_server ANSWERS_JSON PORT`` serves, on 127.0.0.1 UDP, the same A
records our server answers for every endpoint (from :func:`bench.zonedata.export`), with the
records built once at start, and logging off, so that only dnslib's own path is measured.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class ZoneResolver(BaseResolver):
    """Answers A queries for the endpoints from a dict; NXDOMAIN for any other name."""

    def __init__(self, answers: dict[str, list[str]], ttl: int) -> None:
        self.records = {
            name: [RR(name, QTYPE.A, ttl=ttl, rdata=A(ip)) for ip in ips]
            for name, ips in answers.items()
        }

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        reply.header.aa = 1
        reply.header.ra = 0
        question = request.q
        rrs = self.records.get(str(question.qname).rstrip(".").lower())
        if rrs is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif question.qtype == QTYPE.A:
            for rr in rrs:
                reply.add_answer(rr)
        return reply


def main(argv: list[str]) -> int:
    data = json.loads(Path(argv[0]).read_text())
    resolver = ZoneResolver(data["answers"], int(data["ttl"]))
    quiet = DNSLogger(log="-request,-reply,-truncated,-error", logf=lambda _: None)
    server = DNSServer(resolver, port=int(argv[1]), address="127.0.0.1", logger=quiet)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start_thread()
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
