"""The supervisor of ``dnsrace up`` (and of ``dnsrace run``): the cluster never ends because a
process did.

It runs whatever the Procfile lists (through :class:`~services.runtime.cluster.Cluster`, or the
isolated one), restarts a process that exits with a back-off (:mod:`services.runtime.restarts`),
counts each restart in ``dnsrace_supervisor_restarts_total`` and records it in the history, and
carries out the crash faults of the fault API (``process_kill``, ``redis_restart``): it follows
the fault book, stops the target, holds it down until the fault's expiry and starts it again.
While it runs it keeps :data:`~services.core.faults.SUPERVISOR_KEY` set, so that the control
API refuses crash faults nobody would carry out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter
from redis.exceptions import RedisError

from services.core import events
from services.core.faults import CRASH_FAULTS, SUPERVISOR_KEY, FaultType
from services.runtime.clock import WALL_CLOCK
from services.runtime.cluster import Cluster
from services.runtime.processes import terminate
from services.runtime.restarts import Restarts, crash_targets
from services.runtime.service import redis_client
from services.store import history
from services.store.faults import FaultBook

log = logging.getLogger(__name__)
RESTARTS = Counter("dnsrace_supervisor_restarts_total",
                   "Processes the supervisor started again, by why (crashed, fault)",
                   ["process", "why"])
POLL_S = 0.05
"""How often exited processes are looked for (a restart is due 0.2 s after a first crash)."""
FAULT_POLL_S = 0.2


class Supervisor:
    def __init__(self, cluster: Cluster, say: Callable[[str], None] = log.info) -> None:
        self.cluster = cluster
        self.say = say
        self.restarts = Restarts()
        self.pending: list[events.Event] = []
        self.handled: set[str] = set()
        self.exits: dict[str, tuple[float, int]] = {}
        self.restarted: list[events.ProcessRestarted] = []

    def start(self) -> None:
        self.cluster.start()
        now = time.monotonic()
        for name in self.cluster.processes:
            self.restarts.started(name, now)

    def check(self, now: float) -> None:
        """Restart every process that is down and due (one pass of the loop)."""
        for name in self.cluster.crashed():
            code = self.cluster.processes[name].returncode
            self.exits.setdefault(name, (now, code))
            if now < self.restarts.exited(name, now):
                continue
            exited_at, code = self.exits.pop(name)
            why = "fault" if self.restarts.released(name) else "crashed"
            self.cluster.start((name,))
            self.restarts.started(name, now)
            RESTARTS.labels(name, why).inc()
            event = events.ProcessRestarted(process=name, why=why, exit_code=code,
                                            down_s=round(now - exited_at, 3))
            self.restarted.append(event.stamped(WALL_CLOCK))
            self.pending.append(self.restarted[-1])
            self.say(f"{name} {'exited with ' + str(code) if why == 'crashed' else 'held down'}"
                     f"; started again after {now - exited_at:.2f} s ({why})")

    def carry_out(self, kind: FaultType, target: str, expires_ms: int) -> list[str]:
        """Stop a crash fault's processes and hold them down until it expires."""
        until = time.monotonic() + max(0.0, (expires_ms - WALL_CLOCK.now_ms()) / 1000)
        stopped = crash_targets(kind, target, list(self.cluster.processes))
        for name in stopped:
            self.restarts.hold(name, until)
            process = self.cluster.processes[name]
            if kind is FaultType.REDIS_RESTART:
                terminate(process, 8.0)  # a clean stop: the append-only file is flushed
            else:
                self.cluster.kill(name)
            self.say(f"{kind} {target}: {name} stopped until the fault ends")
        return stopped

    async def follow_faults(self, stop: asyncio.Event) -> None:
        """Carry out crash faults from the fault book; record restarts; keep the key set."""
        client = redis_client(self.cluster.settings, retries=1)
        book = FaultBook(client)
        sink = history.RedisHistory(client, source="supervisor", clock=WALL_CLOCK)
        try:
            while not stop.is_set():
                with contextlib.suppress(RedisError, OSError):
                    await client.set(SUPERVISOR_KEY, "1", px=3000)
                    if self.pending:
                        batch, self.pending = self.pending, []
                        await sink.record_many(batch)
                    now_ms = WALL_CLOCK.now_ms()
                    for fault in await book.all():
                        if (fault.type in CRASH_FAULTS and fault.id not in self.handled
                                and fault.active(now_ms)):
                            self.handled.add(fault.id)
                            await asyncio.to_thread(self.carry_out, fault.type, fault.target,
                                                    fault.expires_ms)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), FAULT_POLL_S)
            with contextlib.suppress(RedisError, OSError):
                await client.delete(SUPERVISOR_KEY)
        finally:
            await client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Supervise until ``stop`` is set (the cluster must have been started)."""
        faults = asyncio.create_task(self.follow_faults(stop), name="crash-faults")
        try:
            while not stop.is_set():
                self.check(time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)
        finally:
            stop.set()
            await faults
