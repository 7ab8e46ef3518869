"""Hostile packets and a coverage-guided fuzz run against the DNS packet handler.

The corpus (tests/fixtures/dns_corpus, written by ``python -m tests.fuzz.corpus``) holds
compression loops, long pointer chains, truncated records, odd rdata and friends, each with
the action RFC 1035 / 6891 / 8906 ask for; the fuzz run starts from them.
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dnslib import DNSRecord

from dns_server import metrics
from dns_server.answer import AnswerPolicy
from dns_server.engine import ReplyEngine
from dns_server.zone import Zone
from services.core import names
from tests.conftest import REPO
from tests.fuzz.corpus import CORPUS, cases
from tests.fuzz.zone import fuzz_zone

EXPECTED = json.loads((CORPUS / "expected.json").read_text())
RCODES = {0: "noerror", 1: "formerr", 2: "servfail", 3: "nxdomain", 4: "notimp", 5: "refused"}
FUZZ_RUNS = 100_000
SEEDS = (1, 2)
"""One fuzz process per seed, side by side: the CI machine has two cores."""


def engine() -> ReplyEngine:
    e = ReplyEngine(AnswerPolicy(ttl_s=5), random.Random(1))
    e.set_zone(Zone.from_snapshot(fuzz_zone()))
    return e


def action(query: bytes, reply: bytes | None) -> str:
    if reply is None:
        return "drop"
    assert reply[:2] == query[:2] and reply[2] & 0x80, "a reply must answer the query"
    parsed = DNSRecord.parse(reply)
    if any(rr.rtype == 41 and (rr.ttl >> 24) == 1 for rr in parsed.ar):
        return "badvers"
    return RCODES[reply[3] & 0xF]


def test_the_stored_corpus_is_the_generated_one() -> None:
    assert set(EXPECTED) == set(cases())
    for name, (packet, wanted, _) in cases().items():
        assert (CORPUS / f"{name}.bin").read_bytes() == packet
        assert EXPECTED[name]["action"] == wanted


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_hostile_packet_gets_its_action(name: str) -> None:
    errors_before = metrics.INTERNAL_ERRORS._value.get()
    packet = (CORPUS / f"{name}.bin").read_bytes()
    e = engine()
    for tcp in (False, True):
        assert action(packet, e.respond(packet, tcp)) == EXPECTED[name]["action"]
    assert metrics.INTERNAL_ERRORS._value.get() == errors_before


def test_fuzz_run_of_100000_inputs_finds_no_crash(tmp_path: Path) -> None:
    """100,000 inputs in two runs side by side (seeds 1 and 2, one per core), each from its
    own copy of the corpus: as many inputs as one run, in less wall time (22 s in CI, was
    36-44 s)."""
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")
    runs = []
    for seed in SEEDS:
        corpus = tmp_path / f"corpus-{seed}"
        shutil.copytree(CORPUS, corpus, ignore=shutil.ignore_patterns("*.json"))
        stats = tmp_path / f"stats-{seed}.json"
        process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "fuzz" / "dns_packets.py"),
             f"-runs={FUZZ_RUNS // len(SEEDS)}", f"-seed={seed}", "-max_len=600", str(corpus)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "FUZZ_STATS": str(stats)})
        runs.append((process, stats))
    totals: collections.Counter[str] = collections.Counter()
    malformed: collections.Counter[str] = collections.Counter()
    try:
        for process, stats in runs:
            _, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, stderr[-3000:]
            assert f"Done {FUZZ_RUNS // len(SEEDS)} runs" in stderr
            counts = json.loads(stats.read_text())
            malformed.update(counts.pop("malformed"))
            totals.update(counts)
    finally:
        for process, _ in runs:
            process.kill()
    # the harness writes its counts every 1,000 inputs (libFuzzer exits without handlers)
    assert totals["runs"] >= FUZZ_RUNS - 1000 * len(SEEDS)
    # What the handler did with 2 x 100,000 inputs (UDP and TCP), for the record:
    print("fuzz:", json.dumps({**totals, "malformed": malformed}))
    assert malformed["formerr"] > 0 and totals["dropped"] > 0
    # And the same handler, after all of that, still answers a valid query.
    e = engine()
    query = DNSRecord.question(names.REGIONAL, "A")
    reply = DNSRecord.parse(e.respond(bytes(query.pack()), False) or b"")
    assert reply.header.rcode == 0 and len(reply.rr) == 3


def test_the_docs_table_lists_every_case() -> None:
    doc = (REPO / "docs" / "robustness.md").read_text()
    for name in EXPECTED:
        assert f"`{name}`" in doc
