"""A small client of the control service's fault API (for the CLI, the race and scenarios)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.config import Settings
from services.errors import DnsraceError


class ControlError(DnsraceError, RuntimeError):
    """The control service refused a request or could not be reached; the message says why."""


@dataclass
class ControlClient:
    base_url: str
    token: str = ""
    timeout_s: float = 5.0

    @classmethod
    def for_settings(cls, settings: Settings) -> ControlClient:
        """The client of the cluster these settings describe (a wildcard bind is reached on
        loopback)."""
        host = "127.0.0.1" if settings.control_host in ("0.0.0.0", "::") else settings.control_host
        return cls(f"http://{host}:{settings.control_port}", settings.control_token)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                    method, self.base_url + path, json=body, headers=headers) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ControlError(
                f"the control service at {self.base_url} is not reachable ({e or 'timeout'}); "
                "is the cluster up ('dnsrace up')?") from e
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {"error": text}
        if response.status >= 400:
            raise ControlError(f"{method} {path}: {response.status}: "
                               f"{data.get('error', text)}")
        return data

    async def add(self, type: str, target: str, duration_s: float,
                  params: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"type": type, "target": target, "duration_s": duration_s,
                "params": params or {}}
        result: dict[str, Any] = await self._call("POST", "/faults", body)
        return result

    async def active(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self._call("GET", "/faults"))["faults"]
        return result

    async def remove(self, fault_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", f"/faults/{fault_id}")
        return result

    async def reset(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self._call("POST", "/faults/reset"))["ended"]
        return result
