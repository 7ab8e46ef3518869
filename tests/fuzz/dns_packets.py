"""Coverage-guided fuzzing of the DNS server's packet handler (atheris / libFuzzer).

    python tests/fuzz/dns_packets.py -runs=200000 -seed=1 CORPUS_DIR

Every input goes through ReplyEngine.respond over UDP and over TCP, the function the sockets
call. An input fails the run when the handler raises, counts an internal error (an exception
it had to swallow), or returns a reply that is not a DNS response to that query: too short,
another id, QR clear, or (for a query dnslib itself can read) bytes dnslib cannot parse.
Every 1,000 inputs the harness writes its counts (runs, replies by rcode, drops, malformed
reasons) as JSON to $FUZZ_STATS, if set (libFuzzer ends the process without exit handlers).
"""

from __future__ import annotations

import collections
import json
import os
import random
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from dnslib import DNSRecord

    from dns_server import metrics
    from dns_server.answer import AnswerPolicy
    from dns_server.engine import ReplyEngine
    from dns_server.zone import Zone

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fuzz.zone import fuzz_zone

ENGINE = ReplyEngine(AnswerPolicy(ttl_s=5), random.Random(1))
ENGINE.set_zone(Zone.from_snapshot(fuzz_zone()))
COUNTS: collections.Counter[str] = collections.Counter()


def check(data: bytes, reply: bytes | None) -> None:
    if reply is None:
        COUNTS["dropped"] += 1
        return
    if len(reply) < 12 or reply[:2] != data[:2] or not reply[2] & 0x80:
        raise AssertionError(f"reply is not a response to this query: {reply[:12].hex()}")
    if dnslib_reads(data):
        DNSRecord.parse(reply)  # a client that could write this query must read the reply
    COUNTS[f"rcode_{reply[3] & 0xF}"] += 1


def dnslib_reads(data: bytes) -> bool:
    """dnslib refuses some legal names (any octet may stand in a label, RFC 2181 11)."""
    try:
        DNSRecord.parse(data)
    except Exception:
        return False
    return True


def test_one_input(data: bytes) -> None:
    COUNTS["runs"] += 1
    for tcp in (False, True):
        check(data, ENGINE.respond(data, tcp))
    if metrics.INTERNAL_ERRORS._value.get():
        raise AssertionError("the handler swallowed an internal error")
    if STATS and COUNTS["runs"] % 1000 == 0:
        report()


STATS = os.environ.get("FUZZ_STATS")


def report() -> None:
    malformed = {s.labels["reason"]: int(s.value) for s in metrics.MALFORMED.collect()[0].samples
                 if s.name.endswith("_total")}
    Path(STATS or "/dev/null").write_text(json.dumps({**COUNTS, "malformed": malformed}))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
