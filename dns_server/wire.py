"""Reading queries: a hand-written fast parse for the common query, dnslib for the rest.

The fast parse accepts exactly: QR=0, opcode QUERY, QDCOUNT=1, no answer or authority
records, class IN, an uncompressed name, and either nothing after the question or one
well-formed OPT (EDNS version 0) that ends the packet.  It returns the reply-cache key
(the lower-cased wire name, the qtype and the EDNS kind), where the question ends and the
UDP size the reply may use.  Anything else goes to :func:`parse_slow`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import DNSRecord

from dns_server.answer import Question
from dns_server.errors import (
    DroppedQuery,
    FormatError,
    MalformedReason,
    NotImplementedOpcode,
)
from dns_server.protocol import (
    CLASS_IN,
    HEADER_LEN,
    MAX_UDP_NO_EDNS,
    OUR_UDP_SIZE,
    EdnsKind,
    QType,
)

_COUNTS_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00"
"""Header bytes 4..11: QDCOUNT=1, ANCOUNT=0, NSCOUNT=0, high byte of ARCOUNT 0."""
_MARKERS = (b"\x00", b"\x01", b"\x02")
"""The last byte of a cache key, by EdnsKind."""
_OPT_TYPE = b"\x00\x29"
MAX_LABEL = 63
MAX_NAME_WIRE = 255
"""RFC 1035 2.3.4: labels of 63 octets or less, names of 255 octets or less on the wire."""
_CLASS_IN = b"\x00\x01"


def fast_parse(data: bytes) -> tuple[bytes, int, int] | None:
    """(cache key, end of the question, UDP reply limit) for a common query, else None."""
    n = len(data)
    if n < 17 or data[2] & 0xF8 or data[4:11] != _COUNTS_ONE_QUESTION:
        return None
    i = HEADER_LEN
    while True:
        if i >= n:
            return None
        length = data[i]
        if length == 0:
            break
        if length > 63:
            return None
        i += length + 1
    name_end = i + 1
    if name_end - HEADER_LEN > MAX_NAME_WIRE:
        return None
    qend = name_end + 4
    if data[name_end + 2:qend] != _CLASS_IN:
        return None
    arcount = data[11]
    if arcount == 0:
        if qend != n:
            return None
        return data[HEADER_LEN:name_end].lower() + data[name_end:name_end + 2] + b"\x00", qend, \
            MAX_UDP_NO_EDNS
    if (arcount != 1 or n < qend + 11 or data[qend] or data[qend + 1:qend + 3] != _OPT_TYPE
            or data[qend + 6] or qend + 11 + int.from_bytes(data[qend + 9:qend + 11]) != n):
        return None
    size = int.from_bytes(data[qend + 3:qend + 5])
    limit = MAX_UDP_NO_EDNS if size < MAX_UDP_NO_EDNS else min(size, OUR_UDP_SIZE)
    marker = b"\x02" if data[qend + 7] & 0x80 else b"\x01"
    return data[HEADER_LEN:name_end].lower() + data[name_end:name_end + 2] + marker, qend, limit


def labels_of(name_wire: bytes) -> tuple[str, ...]:
    """The labels of an uncompressed wire name (latin-1, so every byte maps to one char)."""
    labels = []
    i = 0
    while name_wire[i]:
        end = i + 1 + name_wire[i]
        labels.append(name_wire[i + 1:end].decode("latin-1"))
        i = end
    return tuple(labels)


def question_of_key(key: bytes) -> tuple[Question, EdnsKind]:
    """The question (class IN) and EDNS kind a fast-parse cache key stands for."""
    return (Question(labels_of(key[:-3]), int.from_bytes(key[-3:-1])),
            EdnsKind(key[-1]))


def question_wire(question: Question) -> bytes:
    """The uncompressed question section for lower-case labels (what a template holds)."""
    parts = [bytes((len(label),)) + label.encode("latin-1") for label in question.labels]
    return (b"".join(parts) + b"\x00" + question.qtype.to_bytes(2, "big")
            + question.qclass.to_bytes(2, "big"))


def cache_key(question: Question, edns: EdnsKind) -> bytes | None:
    """The fast-parse key of a question, or None if such queries are not cached (not IN)."""
    if question.qclass != CLASS_IN:
        return None
    return question_wire(question)[:-2] + _MARKERS[edns]


@dataclass(frozen=True, slots=True)
class SlowQuery:
    """A query that the fast parse declined but that is a valid question."""

    rd: int
    question: Question
    question_bytes: bytes
    """The question section to echo: the query's own bytes when uncompressed, else rebuilt."""
    edns: EdnsKind
    udp_limit: int
    bad_edns_version: bool


def check_header(data: bytes) -> None:
    """Raise the right QueryError for a packet we must not answer as a normal query."""
    if len(data) < HEADER_LEN:
        raise DroppedQuery(MalformedReason.DROPPED_SHORT, f"{len(data)} bytes")
    if data[2] & 0x80:
        raise DroppedQuery(MalformedReason.DROPPED_RESPONSE)
    opcode = (data[2] >> 3) & 0x0F
    if opcode:
        raise NotImplementedOpcode(MalformedReason.NOTIMP, f"opcode {opcode}")


def parse_slow(data: bytes) -> SlowQuery:
    """Parse any query with dnslib; every parse failure is FORMERR (hostile input included)."""
    check_header(data)
    qdcount = int.from_bytes(data[4:6])
    if qdcount != 1:
        raise FormatError(MalformedReason.FORMERR, f"QDCOUNT {qdcount}")
    try:
        record = DNSRecord.parse(data)
        qname = record.questions[0].qname
        labels = tuple(label.lower().decode("latin-1") for label in qname.label)
        question = Question(labels, int(record.questions[0].qtype),
                            int(record.questions[0].qclass))
        opts = [rr for rr in record.ar if rr.rtype == QType.OPT]
    except Exception as e:  # dnslib raises more than DNSError on hostile input
        raise FormatError(MalformedReason.FORMERR, f"{type(e).__name__}: {e}") from e
    # dnslib reads a 0x40/0x80 length byte as a long label; the name must obey RFC 1035.
    if (any(len(label) > MAX_LABEL for label in labels)
            or sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_WIRE):
        raise FormatError(MalformedReason.FORMERR, "label over 63 or name over 255 octets")
    edns = EdnsKind.NONE
    limit = MAX_UDP_NO_EDNS
    bad_version = False
    if len(opts) > 1:
        raise FormatError(MalformedReason.FORMERR, "more than one OPT record")
    if opts:
        opt = opts[0]
        if opt.rname.label:
            raise FormatError(MalformedReason.FORMERR, "OPT owner is not the root")
        edns = EdnsKind.EDNS_DO if opt.ttl & 0x8000 else EdnsKind.EDNS
        limit = max(MAX_UDP_NO_EDNS, min(int(opt.rclass), OUR_UDP_SIZE))
        bad_version = (opt.ttl >> 16) & 0xFF != 0
    return SlowQuery(data[2] & 0x01, question, _question_bytes(data, question), edns, limit,
                     bad_version)


def _question_bytes(data: bytes, question: Question) -> bytes:
    wire = question_wire(question)
    raw = data[HEADER_LEN:HEADER_LEN + len(wire)]
    if raw[:-4].lower() == wire[:-4] and raw[-4:] == wire[-4:]:
        return raw
    return wire
