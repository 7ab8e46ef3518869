"""Property: no request, however malformed, gets a 5xx from the control API or changes state."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.config import Settings
from services.control.service import Controller, build_app
from services.runtime.ports import free_port
from services.runtime.service import ServiceContext

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=5),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["enactor_stall", "lock_delay", "enactor_pause", "lb_health"])
    | st.text(max_size=10) | JSON,
    "target": st.sampled_from(["use1-az1", "all", "lb-001", "use1-az9"]) | JSON,
    "duration_s": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | JSON,
    "params": st.dictionaries(st.sampled_from(["point", "endpoint", "min_generation",
                                               "capacity", "x"]), JSON, max_size=3) | JSON,
})


class Server:
    """The control API on a real port, in a thread of its own (hypothesis tests are sync)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.replace(control_port=free_port())
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        ctx = ServiceContext(self.settings, "control")
        ctx.ready = True
        self.controller = Controller(ctx)
        runner = web.AppRunner(build_app(ctx, self.controller))
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", self.settings.control_port)
        self.loop.run_until_complete(site.start())
        self.runner = runner
        self.ready.set()
        self.loop.run_forever()

    def request(self, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.settings.control_port}{path}"
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as response:
                data = response.read()
                is_json = response.headers.get_content_type() == "application/json"
                return response.status, json.loads(data) if is_json else data
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())  # every error is a JSON {"error": ...}

    def stop(self) -> None:
        async def close() -> None:
            await self.runner.cleanup()
            await self.controller.client.aclose()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import redis

    from services import config

    with redis.Redis(port=redis_server.port, db=2) as sync:
        sync.flushdb()
    settings = config.load({}, redis_url=f"redis://127.0.0.1:{redis_server.port}/2",
                           state_dir=str(tmp_path_factory.mktemp("control")))
    running = Server(settings)
    running.thread.start()
    assert running.ready.wait(10)
    yield running
    running.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=FIELDS)
def test_no_fault_request_gets_a_5xx(server: Server, body: dict[str, Any]) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    status, reply = server.request("POST", "/faults", raw)
    assert status < 500, reply
    assert status in (201, 400), reply
    if status == 400:
        assert reply["error"]
    else:
        server.request("POST", "/faults/reset", None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200),
       method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
       path=st.sampled_from(["/faults", "/faults/reset", "/faults/x", "/faults/%00", "/nope",
                             "/metrics", "/healthz"]))
def test_no_request_at_all_gets_a_5xx(server: Server, body: bytes, method: str,
                                      path: str) -> None:
    status, _ = server.request(method, path, body)
    assert status < 500
    status, listing = server.request("GET", "/faults", None)
    if method == "POST" and path == "/faults" and status == 200:
        for fault in listing["faults"]:
            server.request("DELETE", f"/faults/{fault['id']}", None)
