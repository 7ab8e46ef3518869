"""bench.floor_server (the cheapest Python responder) and bench.dns_floor (its CPU per query
beside ours, NSD and Knot)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from dnslib import DNSRecord

from bench import servers
from bench.common import dns_query, wait_answering
from bench.dns_floor import main, measure, ratios
from bench.floor_server import responder
from bench.zonedata import ExportedZone
from tests.conftest import require_tool

ANSWERS = {"dynamodb.us-east-1.amazonaws.com": ["10.0.0.1", "10.0.0.2"]}


def test_a_reply_is_built_once_per_query_and_carries_each_query_id() -> None:
    respond = responder(ANSWERS, ttl=5)
    first = respond(dns_query("dynamodb.us-east-1.amazonaws.com", qid=1))
    second = respond(dns_query("DynamoDB.us-east-1.amazonaws.com", qid=2))
    again = respond(dns_query("dynamodb.us-east-1.amazonaws.com", qid=3))
    assert first is not None and second is not None and again is not None
    assert first[:2] == b"\x00\x01" and again[:2] == b"\x00\x03" and again[2:] == first[2:]
    record = DNSRecord.parse(second)
    assert record.header.id == 2
    assert sorted(str(rr.rdata) for rr in record.rr) == ["10.0.0.1", "10.0.0.2"]
    assert all(rr.ttl == 5 for rr in record.rr)
    assert DNSRecord.parse(respond(dns_query("nowhere.example", qid=4)) or b"").rr == []
    assert respond(b"\x00\x01garbage") is None


@pytest.mark.parametrize("mode", ["uvloop", "blocking"])
def test_the_floor_server_answers_over_udp_and_survives_garbage(
        tmp_path: Path, mode: str) -> None:
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"answers": ANSWERS, "ttl": 5}))
    zone = ExportedZone(names=tuple(ANSWERS), zone_file=tmp_path / "unused.zone",
                        answers_json=answers, query_file=tmp_path / "unused.txt", records=2)
    server = servers.start_floor(tmp_path, zone, mode)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.sendto(b"\xff" * 7, ("127.0.0.1", server.port))  # dropped, not fatal
            sock.sendto(dns_query(zone.names[0], qid=77), ("127.0.0.1", server.port))
            reply = DNSRecord.parse(sock.recv(4096))
        assert reply.header.id == 77 and len(reply.rr) == 2
        server.child.check_alive()
        wait_answering(server.port, zone.names[0], server.child)
    finally:
        server.stop()


def test_ratios_are_over_nsd_and_ours_over_the_floor() -> None:
    def row(cpu: float) -> dict[str, float]:
        return {"cpu_per_query_us_median": cpu}

    got = ratios({"ours": row(24.0), "floor-uvloop": row(20.0), "floor-blocking": row(19.0),
                  "nsd": row(16.0)})
    assert got == {"ours_over_nsd": 1.5, "floor-uvloop_over_nsd": 1.25,
                   "floor-blocking_over_nsd": 1.19, "ours_over_floor-uvloop": 1.2}
    assert ratios({"ours": row(24.0)})["ours_over_floor-uvloop"] is None  # no floor, no ratio


def test_a_short_run_prices_every_server(tmp_path: Path) -> None:
    for tool in ("dnsperf", "nsd", "knotd"):
        require_tool(tool)
    result = asyncio.run(measure(tmp_path, rates=(5000,), rounds=1, duration_s=1.0,
                                 endpoints=40, clients=2))
    assert result["skipped"] == {}
    rate = result["rates"]["5000"]
    assert set(rate["servers"]) == {"ours", "floor-uvloop", "floor-blocking", "nsd", "knot"}
    for name, row in rate["servers"].items():
        assert row["sent_total"] > 0, name
        assert row["cpu_per_query_us_median"] > 0, name
    assert rate["ratios"]["ours_over_floor-uvloop"] is not None


def test_bad_arguments_are_clear_errors(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--rates", "fast"], ["--rates", "0"], ["--rounds", "0"], ["--endpoints", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--out", str(tmp_path / "x.json")])
        assert exit_info.value.code == 2
    assert "--rates 'fast': give numbers separated by commas" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
