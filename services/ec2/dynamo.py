"""DWFM's DynamoDB client: the regional name through our DNS, then the DynamoDB JSON API.

Resolution uses the load clients' stub resolver (:class:`loadgen.resolver.StubResolver`), so
an empty answer is cached negatively for the SOA minimum, as it was for EC2 in October 2025.
"""

from __future__ import annotations

import json
import random
from typing import Any

import aiohttp

from loadgen.resolver import StubResolver
from services.core.names import REGIONAL, TARGET_PREFIX
from services.errors import DnsraceError

CONTENT_TYPE = "application/x-amz-json-1.0"


class DynamoCallError(DnsraceError):
    """A call that did not succeed; ``reason`` is the bounded metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ConditionFailed(DynamoCallError):
    def __init__(self, message: str) -> None:
        super().__init__("condition_failed", message)


class DynamoClient:
    """Calls one DynamoDB operation at a time on an address the regional name resolves to."""

    def __init__(self, resolver: StubResolver, session: aiohttp.ClientSession, port: int,
                 timeout_s: float = 2.0, name: str = REGIONAL) -> None:
        self.resolver = resolver
        self.session = session
        self.port = port
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.name = name

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        resolution = await self.resolver.resolve(self.name)
        if not resolution.addresses:
            raise DynamoCallError(str(resolution.outcome),
                                  f"{self.name} did not resolve ({resolution.outcome})")
        address = random.choice(resolution.addresses)
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}
        try:
            async with self.session.post(f"http://{address}:{self.port}/",
                                         data=json.dumps(payload), headers=headers,
                                         timeout=self.timeout) as response:
                body = await response.read()
                status = response.status
        except TimeoutError as e:
            raise DynamoCallError("timeout", f"{operation} on {address} timed out") from e
        except aiohttp.ClientError as e:
            raise DynamoCallError("connect_error", f"{operation} on {address}: {e}") from e
        try:
            answer = json.loads(body)
        except ValueError as e:
            raise DynamoCallError("bad_response", f"{operation}: not JSON") from e
        if status == 200 and isinstance(answer, dict):
            return answer
        kind = str(answer.get("__type", "")) if isinstance(answer, dict) else ""
        if kind.endswith("ConditionalCheckFailedException"):
            raise ConditionFailed(f"{operation}: condition failed")
        reason = "throttled" if kind.endswith("ThrottlingException") else "http_error"
        raise DynamoCallError(reason, f"{operation} on {address}: {status} {kind}")
