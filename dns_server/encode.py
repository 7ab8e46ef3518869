"""Reply templates in wire format, built once per (question, EDNS) with dnslib as the codec.

A template is a reply without its first two bytes (the id) and without the question, so the
hot path only joins ``id + head + question bytes of the query + tail``.  Names in the answer
are compressed against the question, so they echo the client's 0x20 case.
"""

from __future__ import annotations

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
from services.names import GENERATION_OPTION

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
    packed: bytes = record.pack()
    return packed


def _heads(packed: bytes) -> tuple[bytes, bytes]:
    head = packed[2:HEADER_LEN]
    return head, bytes((head[0] | RD_FLAG,)) + head[1:]


def encode_reply(question: Question, resolution: Resolution, edns: EdnsKind) -> WireReply:
    """Every variant of the reply to ``question``, and its truncated form."""
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
