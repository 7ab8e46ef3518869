"""A discrete-event model of one DWFM host, to size the defaults before running processes.

The host's droplets are state-checked every ``check_interval_s`` (staggered); a check renews a
held lease (one DynamoDB call, no worker) and offers work for a lost one to the
:class:`~services.ec2.work.WorkQueue`, the very queue the DWFM process uses. ``workers`` serve
it, each attempt taking ``service_s`` (``fail_s`` when DynamoDB cannot be reached). During an
outage window every DynamoDB call fails, as when the regional name answers empty.

Pure: no clock, no I/O; the same inputs always give the same :class:`SimResult`.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from services.ec2.work import Outcome, Policy, QueueStats, ServiceEstimate, WorkItem, WorkQueue


@dataclass(frozen=True)
class SimConfig:
    droplets: int = 100
    workers: int = 4
    service_s: float = 0.25
    deadline_s: float = 2.0
    lease_ttl_s: float = 6.0
    check_interval_s: float = 2.0
    fail_s: float = 0.05
    outage: tuple[float, float] | None = None
    """(start, end) seconds during which every DynamoDB call fails."""
    start_unleased: int = 0
    """Droplets that begin without a lease, their work queued at 0 in order (a backlog)."""
    horizon_s: float = 60.0

    def __post_init__(self) -> None:
        if self.droplets < 1 or self.workers < 1 or not 0 <= self.start_unleased <= self.droplets:
            raise ValueError("droplets and workers must be >= 1, start_unleased within droplets")
        if min(self.service_s, self.deadline_s, self.lease_ttl_s, self.check_interval_s,
               self.fail_s, self.horizon_s) <= 0:
            raise ValueError("times must be > 0")


@dataclass
class SimResult:
    config: SimConfig
    policy: Policy
    goodput: list[int] = field(default_factory=list)
    """Leases established in each second."""
    held: list[int] = field(default_factory=list)
    """Leases held at the end of each second."""
    depth: list[int] = field(default_factory=list)
    """Waiting items at the end of each second."""
    stats: QueueStats = field(default_factory=QueueStats)

    def held_at(self, t_s: float) -> int:
        return self.held[min(len(self.held) - 1, max(0, math.ceil(t_s) - 1))]

    def recovered_at(self, after_s: float, share: float = 0.95) -> float | None:
        """The first second end after ``after_s`` when ``share`` of the leases are held."""
        need = share * self.config.droplets
        for second, held in enumerate(self.held, start=1):
            if second >= after_s and held >= need:
                return float(second)
        return None


_CHECK, _DONE = 0, 1


def simulate(config: SimConfig, policy: Policy) -> SimResult:
    """Run the model to ``config.horizon_s``; see the module docstring."""
    c = config
    queue = WorkQueue(policy, c.workers, c.deadline_s, ServiceEstimate(c.service_s, weight=0.0))
    result = SimResult(c, policy, stats=queue.stats)
    expires = [0.0] * c.droplets
    events: list[tuple[float, int, int, int, WorkItem | None, Outcome | None]] = []
    seq = 0

    def push(t: float, kind: int, droplet: int = -1, item: WorkItem | None = None,
             outcome: Outcome | None = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, kind, seq, droplet, item, outcome))

    def outage(t: float) -> bool:
        return c.outage is not None and c.outage[0] <= t < c.outage[1]

    for d in range(c.droplets):
        phase = (d + 0.5) * c.check_interval_s / c.droplets
        expires[d] = -1.0 if d < c.start_unleased else phase + c.lease_ttl_s - c.check_interval_s
        if d < c.start_unleased:
            queue.offer(str(d), 0.0)
        push(phase, _CHECK, d)

    free = c.workers
    goodput = [0] * math.ceil(c.horizon_s)
    second = 0

    def dispatch(now: float) -> None:
        nonlocal free
        while free:
            item = queue.take(now)
            if item is None:
                return
            free -= 1
            if outage(now):
                push(now + c.fail_s, _DONE, item=item, outcome=Outcome.FAILED)
            else:
                push(now + c.service_s, _DONE, item=item)

    dispatch(0.0)
    while events and events[0][0] < c.horizon_s:
        now, kind, _, droplet, item, outcome = heapq.heappop(events)
        while second + 1 <= now:
            _close_second(result, expires, queue, second + 1)
            second += 1
        if kind == _CHECK:
            if expires[droplet] > now:
                if not outage(now):
                    expires[droplet] = now + c.lease_ttl_s
            else:
                queue.offer(str(droplet), now)
            push(now + c.check_interval_s, _CHECK, droplet)
        else:
            assert item is not None
            free += 1
            if outcome is None:
                outcome = Outcome.FAILED if outage(now) else (
                    Outcome.VOID if item.expired(now) else Outcome.LEASED)
            if outcome is Outcome.LEASED:
                expires[int(item.droplet)] = now + c.lease_ttl_s
                goodput[int(now)] += 1
            queue.finish(item, outcome, now, c.service_s)
        dispatch(now)
    while second < len(goodput):
        _close_second(result, expires, queue, second + 1)
        second += 1
    result.goodput = goodput
    return result


def _close_second(result: SimResult, expires: list[float], queue: WorkQueue, end: int) -> None:
    result.held.append(sum(1 for e in expires if e > end))
    result.depth.append(len(queue))
