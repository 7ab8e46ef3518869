"""Hostile DNS packets kept as regression fixtures, each with the action it must get.

``python -m tests.fuzz.corpus`` writes them to tests/fixtures/dns_corpus/ (one .bin per case
and expected.json); the fuzz test seeds libFuzzer with them and checks every expectation.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from dnslib import EDNS0, DNSRecord

from services.core import names

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "dns_corpus"


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def qname(name: str) -> bytes:
    return b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\x00"


def query(name: str, qtype: str = "A", edns: EDNS0 | None = None) -> bytes:
    record = DNSRecord.question(name, qtype)
    record.header.id = 0x1234
    if edns is not None:
        record.add_ar(edns)
    return bytes(record.pack())


def cases() -> dict[str, tuple[bytes, str, str]]:
    """name -> (packet, expected action, why)."""
    a_in = struct.pack("!HH", 1, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    regional = qname(names.REGIONAL)
    chain = b"".join(struct.pack("!H", 0xC000 | (12 + 2 * (i + 1))) for i in range(100))
    return {
        "short_11_bytes": (header()[:11], "drop", "shorter than a header"),
        "response_qr_set": (header(flags=0x8100) + regional + a_in, "drop",
                            "QR=1: a response, never answered (no reflection loops)"),
        "qdcount_0": (header(qd=0), "formerr", "QDCOUNT must be 1"),
        "qdcount_2": (header(qd=2) + regional + a_in + regional + a_in, "formerr",
                      "QDCOUNT must be 1"),
        "opcode_update": (header(flags=0x2800) + regional + a_in, "notimp",
                          "opcode 5 (UPDATE) is not implemented"),
        "opcode_notify": (header(flags=0x2000) + regional + a_in, "notimp",
                          "opcode 4 (NOTIFY) is not implemented"),
        "opcode_unassigned": (header(flags=0x7800) + regional + a_in, "notimp",
                              "unknown opcode 15"),
        "compression_loop": (header() + b"\xc0\x0c" + a_in, "formerr",
                             "a name that points at itself"),
        "pointer_chain_100": (header() + chain + b"\x00" + a_in, "formerr",
                              "a chain of 100 compression pointers"),
        "pointer_forward": (header() + b"\xc0\x40" + a_in, "formerr",
                            "a pointer past the end of the message"),
        "truncated_question": (header() + regional[:10], "formerr", "cut inside the name"),
        "truncated_qtype": (header() + regional + b"\x00", "formerr", "cut inside the type"),
        "label_64_bytes": (header() + b"\x40" + b"a" * 64 + b"\x00" + a_in, "formerr",
                           "a label longer than 63 bytes"),
        "name_over_255": (header() + b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"
                          + a_in, "formerr", "a name longer than 255 bytes"),
        "truncated_additional": (header(ar=1) + regional + a_in, "formerr",
                                 "ARCOUNT=1 and nothing follows"),
        "opt_rdlength_overrun": (header(ar=1) + regional + a_in + opt[:-2] + b"\x00\x40",
                                 "formerr", "OPT says 64 bytes of rdata, none follow"),
        "two_opt_records": (header(ar=2) + regional + a_in + opt + opt, "formerr",
                            "RFC 6891: at most one OPT"),
        "answer_section_in_query": (header(an=1) + regional + a_in + b"\xc0\x0c" + a_in
                                    + struct.pack("!IH", 5, 4) + b"\x7f\x00\x00\x01",
                                    "noerror", "records in a query's answer section are ignored"),
        "edns_version_1": (query(names.REGIONAL, edns=EDNS0(version=1)), "badvers",
                           "EDNS version 1 is unknown: BADVERS"),
        "unknown_qtype": (header() + regional + struct.pack("!HH", 65280, 1), "noerror",
                          "an unknown type at an existing name: NODATA"),
        "class_chaos": (header() + qname("version.bind") + struct.pack("!HH", 16, 3),
                        "refused", "not our class: not an open resolver"),
        "axfr": (query(names.ZONE, "AXFR"), "refused", "no zone transfers"),
        "any": (query(names.REGIONAL, "ANY"), "noerror", "RFC 8482 minimal answer"),
        "out_of_zone": (query("example.com"), "refused", "not an open resolver"),
        "in_zone_missing": (query(f"nothing.{names.ZONE}"), "nxdomain", "NXDOMAIN with SOA"),
        "regional_a": (query(names.REGIONAL), "noerror", "the regional name answers"),
        "regional_edns_do": (query(names.REGIONAL, edns=EDNS0(flags="do")), "noerror",
                             "EDNS with DO: answered, DO echoed"),
        "dangling_alias": (query(names.FIPS), "noerror",
                           "alias naming a deleted tree: NOERROR, no answer, SOA"),
        "random_case": (query("DyNaMoDb.Us-EaSt-1.AmAzOnAwS.cOm"), "noerror",
                        "0x20 case is echoed"),
    }


def write() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (packet, action, why) in cases().items():
        (CORPUS / f"{name}.bin").write_bytes(packet)
        expected[name] = {"action": action, "why": why}
    (CORPUS / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    write()
