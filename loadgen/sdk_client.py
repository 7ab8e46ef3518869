"""A real AWS SDK client (aiobotocore) doing PutItem/GetItem against the regional name.

It resolves ``dynamodb.us-east-1.amazonaws.com`` inside the SDK's own HTTP stack (aiohttp's
connector), through the dnsrace DNS server. During the outage it sees what applications saw
in October 2025: a DNS resolution error raised by the SDK, not a mocked one. Copy it, point
it at your own endpoints, keep it.

Two resolvers: ``stub`` (default), the load generator's stub resolver, which caches empty
answers for the SOA minimum as RFC 2308 says; ``c-ares``, aiohttp's ``AsyncResolver``. Note
that c-ares 1.34 (bundled by pycares 5) caches a NOERROR answer with no records for its
maximum cache TTL (an hour) because it takes the TTL of a NODATA answer from its non-SOA
records, of which there are none: a c-ares client stays broken long after the repair.

    python -m loadgen.sdk_client --rate 20 --duration 60 --events events.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import AsyncResolver, ClientConnectorDNSError
from aiohttp.abc import AbstractResolver, ResolveResult
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from loadgen.resolver import StubResolver
from services.config import load
from services.core.names import REGIONAL


@dataclass(frozen=True)
class SdkEvent:
    at: float
    operation: str
    outcome: str
    """ok, dns_error, connect_error, http_error or timeout."""
    detail: str = ""


def classify(error: BaseException) -> str:
    """What kind of failure an SDK exception is, looking through botocore's wrapping."""
    if isinstance(error, EndpointConnectionError):
        cause = error.kwargs.get("error")
        if isinstance(cause, ClientConnectorDNSError):
            return "dns_error"
        return "connect_error"
    if isinstance(error, ClientError):
        return "http_error"
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    return "connect_error"


class StubAiohttpResolver(AbstractResolver):
    """aiohttp's resolver interface over the load generator's RFC 2308 stub resolver."""

    def __init__(self, host: str, port: int) -> None:
        self.stub = StubResolver(host, port, timeout_s=1.0)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        resolution = await self.stub.resolve(host)
        if not resolution.addresses:
            # aiohttp turns an OSError from its resolver into ClientConnectorDNSError.
            raise OSError(f"{host} did not resolve: {resolution.outcome}")
        return [ResolveResult(hostname=host, host=ip, port=port, family=socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)
                for ip in resolution.addresses]

    async def close(self) -> None:
        await self.stub.aclose()


Resolver = Literal["stub", "c-ares"]


async def run(host: str, port: int, lb_port: int, rate: float, duration_s: float,
              events_path: Path | None, table: str = "dnsrace",
              keep_alive: bool = False, resolver_kind: Resolver = "stub") -> Counter[str]:
    resolver: AbstractResolver = (
        StubAiohttpResolver(host, port) if resolver_kind == "stub"
        else AsyncResolver(nameservers=[f"{host}:{port}"], timeout=1.0, tries=1))
    # Without keep-alive every call opens a connection and so resolves the name (through
    # aiohttp's 5 s DNS cache), as a fleet of short-lived clients does. With keep-alive a
    # pooled connection to the old address keeps working and hides the outage until it closes.
    config = AioConfig(
        connector_args={"resolver": resolver, "ttl_dns_cache": 5,
                        "keepalive_timeout": 30.0 if keep_alive else 0.05},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=1.0, read_timeout=2.0,
    )
    counts: Counter[str] = Counter()
    sink = open(events_path, "w") if events_path else None  # noqa: SIM115 - closed below
    session = get_session()
    try:
        async with session.create_client(
                "dynamodb", region_name="us-east-1", endpoint_url=f"http://{REGIONAL}:{lb_port}",
                aws_access_key_id="dnsrace", aws_secret_access_key="dnsrace",
                config=config) as client:
            started = time.monotonic()
            n = 0
            while (elapsed := time.monotonic() - started) < duration_s:
                n += 1
                key = {"pk": {"S": f"sdk-{n % 100}"}}
                for operation in ("PutItem", "GetItem"):
                    try:
                        if operation == "PutItem":
                            await client.put_item(TableName=table,
                                                  Item={**key, "n": {"N": str(n)}})
                        else:
                            await client.get_item(TableName=table, Key=key)
                        event = SdkEvent(time.time(), operation, "ok")
                    except (BotoCoreError, ClientError, TimeoutError) as e:
                        event = SdkEvent(time.time(), operation, classify(e), str(e)[:200])
                    counts[event.outcome] += 1
                    if sink:
                        sink.write(json.dumps(asdict(event)) + "\n")
                        sink.flush()
                await asyncio.sleep(max(0.0, n / rate - (time.monotonic() - started)))
                if int(elapsed) != int(time.monotonic() - started):
                    print(f"+{time.monotonic() - started:5.1f}s {dict(counts)}", flush=True)
    finally:
        if sink:
            sink.close()
        await resolver.close()
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadgen.sdk_client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=10.0, help="put+get pairs per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run")
    parser.add_argument("--events", type=Path, help="write one JSON line per SDK call here")
    parser.add_argument("--resolver", choices=("stub", "c-ares"), default="stub",
                        help="stub: RFC 2308 caching (default); c-ares: aiohttp's AsyncResolver")
    parser.add_argument("--keep-alive", action="store_true",
                        help="reuse pooled connections (hides the outage while they last)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or not 0 < args.duration <= 3600:
        parser.error("--rate must be > 0 and --duration between 0 and 3600 seconds")
    settings = load()
    counts = asyncio.run(run(settings.dns_host, settings.dns_port, settings.lb_port, args.rate,
                             args.duration, args.events, keep_alive=args.keep_alive,
                             resolver_kind=args.resolver))
    summary: dict[str, Any] = {"calls": sum(counts.values()), "outcomes": dict(counts)}
    print(json.dumps(summary))
    return 0 if counts else 1


if __name__ == "__main__":
    sys.exit(main())
