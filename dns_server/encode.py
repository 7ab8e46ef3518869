"""Reply templates in wire format, built once per (question, EDNS) with dnslib as the codec.

A template is a reply without its first two bytes (the id) and without the question, so the
hot path only joins ``id + head + question bytes of the query + tail``.  Names in the answer
are compressed against the question, so they echo the client's 0x20 case.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from dnslib import (
    EDNS0,
    NS,
    RD,
    RR,
    SOA,
    TXT,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
    EDNSOption,
)

from dns_server.answer import (
    ARdata,
    HinfoRdata,
    NsRdata,
    Question,
    Record,
    Resolution,
    SoaRdata,
    TxtRdata,
)
from dns_server.protocol import HEADER_LEN, OUR_UDP_SIZE, EdnsKind, QType, Rcode
from dns_server.wire import question_wire
from services.core.names import GENERATION_OPTION

RD_FLAG = 0x01
"""Recursion Desired, in the third header byte: copied from query to reply."""
_QR_FLAG = 0x80


@dataclass(frozen=True, slots=True)
class WireReply:
    """A reply ready to be stamped with a query's id, RD bit and question bytes."""

    head: tuple[bytes, bytes]
    """Header bytes 2..12 (flags and counts) for RD clear / set."""
    tails: tuple[bytes, ...]
    """Everything after the question, one per answer variant."""
    size: int
    """Length of the largest full reply."""
    trunc_head: tuple[bytes, bytes]
    trunc_tail: bytes
    """The TC=1 reply with no records (but the OPT when the query had EDNS)."""


def _label(name: str) -> DNSLabel:
    return DNSLabel(tuple(part.encode("latin-1") for part in name.split(".")) if name else ())


def _rr(record: Record) -> RR:
    rd = record.rdata
    name = _label(record.name)
    if isinstance(rd, ARdata):
        return RR(name, QType.A, ttl=record.ttl, rdata=A(rd.ip))
    if isinstance(rd, NsRdata):
        return RR(name, QType.NS, ttl=record.ttl, rdata=NS(_label(rd.host)))
    if isinstance(rd, SoaRdata):
        soa = rd.soa
        times = (rd.serial % 2**32, soa.refresh, soa.retry, soa.expire, soa.minimum)
        return RR(name, QType.SOA, ttl=record.ttl,
                  rdata=SOA(_label(soa.mname), _label(soa.rname), times))
    if isinstance(rd, TxtRdata):
        return RR(name, QType.TXT, ttl=record.ttl, rdata=TXT(list(rd.strings)))
    if isinstance(rd, HinfoRdata):
        cpu, os_ = rd.cpu.encode(), rd.os.encode()
        raw = bytes((len(cpu),)) + cpu + bytes((len(os_),)) + os_
        return RR(name, QType.HINFO, ttl=record.ttl, rdata=RD(raw))
    raise TypeError(f"no encoding for {rd!r}")  # pragma: no cover


def _opt(edns: EdnsKind, rcode: int, generation: int | None) -> EDNS0:
    options = ([EDNSOption(GENERATION_OPTION, generation.to_bytes(8, "big"))]
               if generation is not None else [])
    return EDNS0(udp_len=OUR_UDP_SIZE, flags="do" if edns is EdnsKind.EDNS_DO else "",
                 ext_rcode=rcode >> 4, opts=options)


def _message(question: Question, rcode: int, authoritative: bool, truncated: bool,
             answer: tuple[Record, ...], authority: tuple[Record, ...],
             additional: tuple[Record, ...], edns: EdnsKind,
             generation: int | None = None) -> bytes:
    header = DNSHeader(id=0, qr=1, aa=int(authoritative), tc=int(truncated), rd=0,
                       rcode=rcode & 0xF)
    qname = DNSLabel(tuple(label.encode("latin-1") for label in question.labels))
    record = DNSRecord(header, q=DNSQuestion(qname, question.qtype, question.qclass))
    for rr in answer:
        record.add_answer(_rr(rr))
    for rr in authority:
        record.add_auth(_rr(rr))
    for rr in additional:
        record.add_ar(_rr(rr))
    if edns is not EdnsKind.NONE:
        record.add_ar(_opt(edns, rcode, generation))
    return bytes(record.pack())  # dnslib packs a bytearray; replies are kept as bytes


def _heads(packed: bytes) -> tuple[bytes, bytes]:
    head = packed[2:HEADER_LEN]
    return head, bytes((head[0] | RD_FLAG,)) + head[1:]


def _opt_wire(edns: EdnsKind, generation: int | None) -> bytes:
    """Our OPT record (root owner, no extended rcode), as dnslib packs it."""
    options = (GENERATION_OPTION.to_bytes(2, "big") + b"\x00\x08" + generation.to_bytes(8, "big")
               if generation is not None else b"")
    flags = b"\x80\x00" if edns is EdnsKind.EDNS_DO else b"\x00\x00"
    return (b"\x00\x00\x29" + OUR_UDP_SIZE.to_bytes(2, "big") + b"\x00\x00" + flags
            + len(options).to_bytes(2, "big") + options)


def _address_reply(question: Question, resolution: Resolution,
                   edns: EdnsKind) -> WireReply | None:
    """The common reply (NOERROR, A records at the question's name only), encoded directly.

    Byte for byte what the dnslib path gives (names compressed to the question, offset 12),
    in microseconds instead of a dnslib message per variant: under zone churn every changed
    endpoint's reply is encoded again, and that must not starve the query path.
    """
    if (question.qtype != QType.A or resolution.rcode != Rcode.NOERROR or resolution.authority
            or resolution.additional or not resolution.variants):
        return None
    name = question.name
    first = resolution.variants[0].answer
    for record in first:
        if record.name != name or not isinstance(record.rdata, ARdata):
            return None
    opt = _opt_wire(edns, resolution.generation) if edns is not EdnsKind.NONE else b""
    ar = b"\x00\x01" if opt else b"\x00\x00"
    aa = 0x04 if resolution.authoritative else 0
    count = len(first)
    head = bytes((_QR_FLAG | aa, 0, 0, 1)) + count.to_bytes(2, "big") + b"\x00\x00" + ar
    # The variants order the same records differently (each address first once): each record
    # is encoded once, by ``id``, and a variant is its records' bytes in its order. A variant
    # with another record, or another count, takes the general path.
    encoded = {id(record): b"\xc0\x0c\x00\x01\x00\x01"
               + (record.ttl & 0xFFFFFFFF).to_bytes(4, "big")
               + b"\x00\x04" + socket.inet_aton(record.rdata.ip)  # type: ignore[union-attr]
               for record in first}
    tails = []
    for variant in resolution.variants:
        if len(variant.answer) != count:
            return None
        try:
            tails.append(b"".join([encoded[id(record)] for record in variant.answer]) + opt)
        except KeyError:
            return None
    trunc_head = bytes((_QR_FLAG | aa | 0x02, 0, 0, 1, 0, 0, 0, 0)) + ar
    trunc_tail = _opt_wire(edns, None) if opt else b""
    size = HEADER_LEN + len(question_wire(question)) + max(len(t) for t in tails)
    return WireReply(_split_rd(head), tuple(tails), size, _split_rd(trunc_head), trunc_tail)


def _split_rd(head: bytes) -> tuple[bytes, bytes]:
    return head, bytes((head[0] | RD_FLAG,)) + head[1:]


def encode_reply(question: Question, resolution: Resolution, edns: EdnsKind) -> WireReply:
    """Every variant of the reply to ``question``, and its truncated form."""
    fast = _address_reply(question, resolution, edns)
    if fast is not None:
        return fast
    return encode_reply_dnslib(question, resolution, edns)


def encode_reply_dnslib(question: Question, resolution: Resolution,
                        edns: EdnsKind) -> WireReply:
    """``encode_reply`` through dnslib for every kind of reply (the reference encoding)."""
    qlen = len(question_wire(question))
    tails = []
    head = (b"", b"")
    size = 0
    for variant in resolution.variants:
        packed = _message(question, resolution.rcode, resolution.authoritative, False,
                          variant.answer, resolution.authority, resolution.additional, edns,
                          resolution.generation)
        head = _heads(packed)
        tails.append(packed[HEADER_LEN + qlen:])
        size = max(size, len(packed))
    truncated = _message(question, resolution.rcode, resolution.authoritative, True,
                         (), (), (), edns)
    return WireReply(head, tuple(tails), size, _heads(truncated), truncated[HEADER_LEN + qlen:])


def encode_full(question: Question, rcode: Rcode, edns: EdnsKind) -> bytes:
    """A reply with no records (BADVERS, SERVFAIL), id 0 and RD clear: built per query, rare."""
    return _message(question, rcode, False, False, (), (), (), edns)


def header_only(query: bytes, rcode: Rcode) -> bytes:
    """FORMERR / NOTIMP: the query's id and opcode, QR set, every other flag and count clear."""
    opcode_bits = query[2] & 0x78
    return query[:2] + bytes((_QR_FLAG | opcode_bits, rcode & 0xF)) + bytes(8)
