"""The server as dig sees it, over UDP and TCP (skipped when dig is not installed)."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator

import pytest

from dns_server.server import DnsServer
from services.config import load
from services.core import names
from services.core.records import (
    Action,
    Alias,
    Change,
    ChangeBatch,
    WeightedAddress,
    a_records,
    alias_record,
)
from services.runtime.redis_server import EmbeddedRedis
from services.store.zone import ZoneStore, ensure_apex
from tests.conftest import require_tool

TREE = a_records(names.tree_name(4, names.REGIONAL), [WeightedAddress("127.0.10.9", 1)])


@pytest.fixture
async def dns(redis_server: EmbeddedRedis, zone: ZoneStore) -> AsyncIterator[DnsServer]:
    await ensure_apex(zone, 5, 5)
    done = await zone.apply(ChangeBatch((
        Change(Action.CREATE, TREE),
        Change(Action.UPSERT, alias_record(names.REGIONAL, Alias(TREE.name, 4))),
    )))
    server = DnsServer(load({}), keys=zone.keys, redis_url=redis_server.url, port=0,
                       rng=random.Random(1))
    await server.start()
    await server.wait_for_serial(done.serial, timeout_s=10)
    yield server
    await server.stop()


async def dig(server: DnsServer, *args: str) -> str:
    """Run dig without blocking the loop the server answers on."""
    process = await asyncio.create_subprocess_exec(
        require_tool("dig"), "@127.0.0.1", "-p", str(server.port), "+tries=1", "+timeout=3",
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, err.decode()
    return out.decode()


def status(output: str) -> str:
    match = re.search(r"status: (\w+)", output)
    assert match, output
    return match.group(1)


def flags(output: str) -> set[str]:
    match = re.search(r";; flags: ([\w ]+);", output)
    assert match, output
    return set(match.group(1).split())


TRANSPORTS = pytest.mark.parametrize("transport", ["+notcp", "+tcp"])


@TRANSPORTS
async def test_dig_gets_the_regional_address_authoritatively(dns: DnsServer,
                                                            transport: str) -> None:
    out = await dig(dns, transport, names.REGIONAL, "A")
    assert status(out) == "NOERROR"
    assert "aa" in flags(out)
    assert re.search(rf"^{re.escape(names.REGIONAL)}\.\s+5\s+IN\s+A\s+127\.0\.10\.9$", out,
                     re.MULTILINE), out
    short = await dig(dns, transport, "+short", names.REGIONAL, "A")
    assert short.split() == ["127.0.10.9"]


@TRANSPORTS
async def test_dig_outside_the_zone_is_refused(dns: DnsServer, transport: str) -> None:
    out = await dig(dns, transport, "www.example.com", "A")
    assert status(out) == "REFUSED"
    assert "aa" not in flags(out)
    assert "ANSWER: 0" in out


@TRANSPORTS
async def test_dig_nonexistent_name_is_nxdomain_with_soa(dns: DnsServer, transport: str) -> None:
    out = await dig(dns, transport, f"nonexistent.{names.ZONE}", "A")
    assert status(out) == "NXDOMAIN"
    assert "aa" in flags(out)
    assert re.search(rf"^{re.escape(names.ZONE)}\.\s+\d+\s+IN\s+SOA\s+ns1\.{re.escape(names.ZONE)}",
                     out, re.MULTILINE), out


async def test_dig_sees_the_empty_answer_of_a_dangling_alias(dns: DnsServer,
                                                            zone: ZoneStore) -> None:
    done = await zone.apply(ChangeBatch((Change(Action.DELETE, TREE),)))
    await dns.wait_for_serial(done.serial, timeout_s=5)
    out = await dig(dns, names.REGIONAL, "A")
    assert status(out) == "NOERROR" and "ANSWER: 0" in out and "AUTHORITY: 1" in out
