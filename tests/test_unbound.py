"""Unbound (the real Debian package) in front of a DNS authority over real sockets: the empty
answer is cached for the SOA's negative TTL and served from Unbound's cache while the
authority has the addresses back, as the VPC resolver served it in October 2025."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loadgen.outcome import Outcome
from loadgen.resolver import StubResolver
from services.runtime.ports import free_port
from services.runtime.unbound import Unbound, UnboundConfig, parse_stats
from tests.conftest import require_tool
from tests.test_loadgen_resolver import ZONE, ScriptedDNS, answer, negative

NAME = "dynamodb." + ZONE


@pytest.fixture
async def authority() -> AsyncIterator[ScriptedDNS]:
    server = await ScriptedDNS(lambda q, _: negative(q, soa_ttl=60, minimum=60)).start()
    yield server
    await server.stop()


async def test_the_empty_answer_is_served_from_unbounds_cache_during_the_outage(
        authority: ScriptedDNS, tmp_path: Path) -> None:
    require_tool("unbound")
    require_tool("unbound-control")
    config = UnboundConfig(free_port(), free_port(), "127.0.0.1", authority.port, tmp_path,
                           zone=ZONE)
    async with Unbound(config) as unbound:
        client = StubResolver("127.0.0.1", config.port, timeout_s=3.0)
        first = await client.query(NAME)
        assert first.outcome is Outcome.DNS_NODATA
        asked = len(authority.queries)
        assert asked >= 1
        # the authority has the addresses back, but Unbound keeps the empty answer (SOA 60 s)
        authority.script = lambda q, _: answer(q, "127.0.10.1", ttl=5)
        for _ in range(5):
            again = await client.query(NAME)
            assert again.outcome is Outcome.DNS_NODATA
        assert len(authority.queries) == asked  # none reached the authority
        stats = await unbound.stats()
        assert stats["total.num.cachehits"] >= 5
        assert stats["num.answer.rcode.nodata"] >= 6
        # a name never asked goes to the authority, which now answers
        fresh = await client.query("other." + ZONE)
        assert fresh.outcome is Outcome.OK and fresh.addresses == ("127.0.10.1",)


def test_statistics_lines_are_read_as_numbers_and_junk_is_skipped() -> None:
    stats = parse_stats("total.num.cachehits=12\nnum.answer.rcode.nodata=3\nbogus\nx=y\n")
    assert stats == {"total.num.cachehits": 12.0, "num.answer.rcode.nodata": 3.0}


def test_the_config_points_the_stub_zone_at_our_server(tmp_path: Path) -> None:
    text = UnboundConfig(5300, 5301, "127.0.0.1", 5353, tmp_path).text()
    assert "stub-addr: 127.0.0.1@5353" in text and 'name: "amazonaws.com"' in text
    assert "port: 5300" in text and "control-port: 5301" in text
    assert "do-not-query-localhost: no" in text and "control-use-cert: no" in text
