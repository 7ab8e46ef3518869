"""Zone churn: a real planner and enactor pair (the cluster's processes) on the bench's Redis.

The planner publishes a plan every ``interval_s``; every plan moves every endpoint's weights
(so every endpoint gets a new tree), and the enactor walks all of them, flips aliases and
cleans up old trees, as in the cluster. The DNS server under test follows every batch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.common import PYTHON, Child, cpu_seconds
from services.runtime.ports import metrics_port_base
from services.store.zone import ZoneKeys


@dataclass
class Churn:
    redis_url: str
    cells: int
    work: Path
    interval_s: float = 1.0
    children: list[Child] = field(default_factory=list)
    _started: tuple[float, int] = (0.0, 0)

    def _serial(self) -> int:
        with redis.Redis.from_url(self.redis_url, decode_responses=True) as client:
            return int(client.get(ZoneKeys().serial) or 0)

    def start(self) -> Churn:
        base = metrics_port_base()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DNSRACE_")}
        env.update(DNSRACE_REDIS_URL=self.redis_url, DNSRACE_CELLS=str(self.cells),
                   DNSRACE_PLAN_INTERVAL_S=f"{self.interval_s:g}",
                   DNSRACE_METRICS_PORT_BASE=str(base), DNSRACE_LOG_LEVEL="WARNING",
                   DNSRACE_STATE_DIR=str(self.work / "churn-state"))
        self.children = [
            Child("planner", [PYTHON, "-m", "services.tools.cli", "planner"],
                  self.work / "churn-planner.log", env=env).start(),
            Child("enactor", [PYTHON, "-m", "services.tools.cli", "enactor", "--az", "use1-az1"],
                  self.work / "churn-enactor.log", env=env).start(),
        ]
        self._started = (time.monotonic(), self._serial())
        return self

    def wait_churning(self, batches: int = 50, timeout_s: float = 20.0) -> None:
        """Until the zone has moved by ``batches`` batches (the enactor is at work)."""
        deadline = time.monotonic() + timeout_s
        while self._serial() < self._started[1] + batches:
            for child in self.children:
                child.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the zone is not changing")
            time.sleep(0.1)
        self._started = (time.monotonic(), self._serial())

    def rate(self) -> dict[str, Any]:
        """Committed batches per second since ``wait_churning`` (or start)."""
        started, serial = self._started
        elapsed = time.monotonic() - started
        moved = self._serial() - serial
        return {"batches": moved, "seconds": round(elapsed, 2),
                "batches_per_s": round(moved / elapsed, 1) if elapsed > 0 else 0.0}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by the planner, the enactor and Redis (all its threads)."""
        out = {child.name: cpu_seconds(child.pid) for child in self.children}
        with redis.Redis.from_url(self.redis_url, decode_responses=True) as client:
            info = client.info("cpu")
        out["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return out

    def stop(self) -> None:
        for child in self.children:
            child.stop()

    def __enter__(self) -> Churn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
