"""One DWFM (DropletWorkflow Manager) host: droplet leases in DynamoDB, through the regional name.

The host owns ``dwfm_droplets`` droplets spread over the three AZs. Every
``dwfm_check_interval_s`` (staggered) a state check renews a held lease with one conditional
UpdateItem; a droplet without a lease gets a work item in the host's
:class:`~services.ec2.work.WorkQueue`. ``dwfm_workers`` workers serve it: read the lease,
do the droplet's work (longer with more instances on it), write the lease with a conditional
PutItem; a lease written after the item's deadline is void and the work is offered again.
The policy is ``legacy`` unless the protection ``queue_throttle`` is on.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from services.config import Settings
from services.core import events
from services.core.backoff import RetryBackoff
from services.core.clock import Clock
from services.core.events import HistorySink
from services.core.names import AZS, DEFAULT_TABLE
from services.ec2.dynamo import ConditionFailed, DynamoCallError, DynamoClient
from services.ec2.placement import Candidate, place
from services.ec2.work import Outcome, Policy, ServiceEstimate, WorkItem, WorkQueue, judge
from services.runtime.clock import WALL_CLOCK

log = logging.getLogger(__name__)
ADOPT_RETRY = RetryBackoff(base_s=0.1, cap_s=2.0)
"""Waits between attempts to take over a droplet's lease at start-up (DynamoDB unreachable)."""

LEASES_HELD = Gauge("dnsrace_dwfm_leases_held", "Droplet leases this DWFM host holds", ["az"])
DROPLETS = Gauge("dnsrace_dwfm_droplets", "Droplets this DWFM host owns", ["az"])
QUEUE_DEPTH = Gauge("dnsrace_dwfm_queue_depth", "Lease work items waiting for a worker")
OLDEST_WORK_AGE = Gauge("dnsrace_dwfm_oldest_work_age_seconds",
                        "How long the oldest lease work item has waited for a worker (0: none)")
ADMISSION_LIMIT = Gauge("dnsrace_dwfm_admission_limit",
                        "Waiting items beyond which lease work is refused (0: no limit, legacy)")
OPERATOR_THROTTLE = Gauge("dnsrace_dwfm_operator_throttle",
                          "Lease work admitted per second at most, set by the operators (0: off)")
RESTARTS = Counter("dnsrace_dwfm_restarts", "Selective restarts by the operators")
INSTANCES = Gauge("dnsrace_dwfm_instances", "Instances running on this host's droplets", ["az"])
PLACEMENTS = Counter("dnsrace_dwfm_placements", "Launches ec2_api asked this host to place",
                     ["outcome"])
GOODPUT = Gauge("dnsrace_dwfm_goodput", "Leases established per second (last 5 s)")
WORK_EXPIRED = Counter("dnsrace_dwfm_work_expired",
                       "Work items finished after their deadline: the lease was void")
WORK_STARTED_LATE = Counter(
    "dnsrace_dwfm_work_started_late",
    "Work items a worker started after their deadline had passed (never under queue_throttle)")
WORK = Counter("dnsrace_dwfm_work", "Lease work items by how they ended", ["outcome"])
ADMISSIONS = Counter("dnsrace_dwfm_admissions", "Work offered to the queue", ["outcome"])
RENEWALS = Counter("dnsrace_dwfm_renewals", "Lease renewals by state checks", ["outcome"])
for _az in AZS:
    LEASES_HELD.labels(_az)
for _outcome in (*Outcome.__members__.values(), "dropped"):
    WORK.labels(getattr(_outcome, "value", _outcome))
for _label in ("admitted", "already_queued", "throttled"):
    ADMISSIONS.labels(_label)
for _label in ("ok", "failed"):
    RENEWALS.labels(_label)
for _label in ("placed", "no_capacity"):
    PLACEMENTS.labels(_label)

GOODPUT_WINDOW_S = 5.0
FAILED_CALL_PAUSE_S = 0.05
"""A worker whose call failed pauses this long (the model's ``fail_s``): a negatively cached
name fails without awaiting anything, and a worker must not hold the event loop."""
RENEWALS_IN_FLIGHT = 16


@dataclass(frozen=True)
class Droplet:
    name: str
    az: str
    instances: int


def droplets(host: int, count: int) -> tuple[Droplet, ...]:
    """The droplets host ``host`` owns: spread over the AZs, 0 to 7 instances each."""
    return tuple(Droplet(f"dwfm{host}-{AZS[i % len(AZS)]}-{i:04d}", AZS[i % len(AZS)], i % 8)
                 for i in range(count))


class DwfmHost:
    def __init__(self, settings: Settings, host: int, client: DynamoClient,
                 clock: Clock = WALL_CLOCK, history: HistorySink | None = None) -> None:
        self.clock = clock
        self.history = history
        self.unrecorded: asyncio.Queue[events.Event] = asyncio.Queue(maxsize=20_000)
        s = settings
        self.settings = settings
        self.holder = f"dwfm-{host}"
        self.client = client
        self.droplets = {d.name: d for d in droplets(host, s.dwfm_droplets)}
        self.expires: dict[str, float] = dict.fromkeys(self.droplets, 0.0)
        self.instances = {d.name: d.instances for d in self.droplets.values()}
        self.lost_leases: set[str] = set()
        """Droplets whose lease this host held and saw expire (their LeaseLost is recorded)."""
        self.attempts: set[asyncio.Task[None]] = set()
        self.rng = random.Random(host)
        policy = (Policy.QUEUE_THROTTLE if "queue_throttle" in s.active_protections
                  else Policy.LEGACY)
        expected = s.dwfm_work_s + 4 * s.dwfm_instance_work_s + 0.02
        self.queue = WorkQueue(policy, s.dwfm_workers, s.dwfm_deadline_s,
                               ServiceEstimate(expected))
        self.work_ready = asyncio.Event()
        self.leased_at: deque[float] = deque()
        self.renewing = asyncio.Semaphore(RENEWALS_IN_FLIGHT)
        for d in self.droplets.values():
            DROPLETS.labels(d.az).inc()

    async def record(self, event: events.Event) -> None:
        """Queue ``event`` for the history, stamped now; never waits on Redis (a slow or
        restarting Redis must not hold up state checks: leases would expire)."""
        if self.history is None:
            return
        if self.unrecorded.full():
            self.unrecorded.get_nowait()  # the oldest goes: the history is a record, not a log
        self.unrecorded.put_nowait(event.stamped(self.clock))

    async def history_writer(self) -> None:
        """Write queued events to the history in batches, in order."""
        while self.history is not None:
            batch = [await self.unrecorded.get()]
            while not self.unrecorded.empty() and len(batch) < 500:
                batch.append(self.unrecorded.get_nowait())
            await self.history.record_many(batch)

    def place(self, az: str | None) -> Droplet | None:
        """Put one new instance on a leased droplet with room (``az`` if given)."""
        now = self.now()
        cap = self.settings.ec2_droplet_capacity
        chosen = place({n: Candidate(n, d.az, self.instances[n], self.expires[n] > now)
                        for n, d in self.droplets.items()}, cap, az, self.rng)
        if chosen is None:
            PLACEMENTS.labels("no_capacity").inc()
            return None
        self.instances[chosen.droplet] += 1
        PLACEMENTS.labels("placed").inc()
        return self.droplets[chosen.droplet]

    async def restart(self) -> tuple[int, int]:
        """The operators' selective restart: waiting and in-flight lease work is lost, and the
        queue is rebuilt from the droplets whose lease is not held."""
        for task in list(self.attempts):
            task.cancel()
        now = self.now()
        unleased = [n for n in self.droplets if self.expires[n] <= now]
        lost, queued = self.queue.restart(unleased, now)
        self.work_ready.set()
        RESTARTS.inc()
        return lost, queued

    def now(self) -> float:
        """Seconds, from the clock the host is given (time passed in)."""
        return self.clock.now_ms() / 1000

    def held(self, now: float) -> dict[str, int]:
        counts = dict.fromkeys(AZS, 0)
        for name, until in self.expires.items():
            if until > now:
                counts[self.droplets[name].az] += 1
        return counts

    def _key(self, droplet: str) -> dict[str, object]:
        return {"pk": {"S": f"lease#{droplet}"}}

    async def renew(self, droplet: str) -> None:
        now = self.now()
        until = now + self.settings.lease_ttl_s
        async with self.renewing:
            try:
                await self.client.call("UpdateItem", {
                    "TableName": DEFAULT_TABLE, "Key": self._key(droplet),
                    "UpdateExpression": "SET expires = :until",
                    "ConditionExpression": "holder = :me",
                    "ExpressionAttributeValues": {":until": {"N": f"{until:.3f}"},
                                                  ":me": {"S": self.holder}}})
            except DynamoCallError as e:
                RENEWALS.labels("failed").inc()
                log.debug("renewal of %s failed: %s", droplet, e)
                return
        if self.expires[droplet] > now:  # still ours: the renewal counts
            self.expires[droplet] = until
            RENEWALS.labels("ok").inc()

    async def adopt(self, droplet: str) -> None:
        """At start-up, take a droplet's lease if it is new or still ours (no work item).

        A lease that expired while the host was away is left to the state checks: its
        re-establishment is queued work like any other.
        """
        attempt = 0
        while True:
            now = self.now()
            until = now + self.settings.lease_ttl_s
            try:
                async with self.renewing:
                    await self.client.call("PutItem", {
                        "TableName": DEFAULT_TABLE,
                        "Item": {**self._key(droplet), "holder": {"S": self.holder},
                                 "expires": {"N": f"{until:.3f}"}},
                        "ConditionExpression": "attribute_not_exists(pk) OR "
                                               "(holder = :me AND expires > :now)",
                        "ExpressionAttributeValues": {":me": {"S": self.holder},
                                                      ":now": {"N": f"{now:.3f}"}}})
            except ConditionFailed:
                return
            except DynamoCallError as e:
                attempt += 1
                delay = ADOPT_RETRY.delay(attempt)
                log.debug("adopting %s: %s; retrying in %.1f s", droplet, e, delay)
                await asyncio.sleep(delay)
                continue
            self.expires[droplet] = until
            return

    async def run(self) -> None:
        """Adopt the droplets' leases, then check their state for ever."""
        async with asyncio.TaskGroup() as adoptions:
            for name in self.droplets:
                adoptions.create_task(self.adopt(name))
        log.info("%s adopted %d of %d leases", self.holder,
                 sum(self.held(self.now()).values()), len(self.droplets))
        await self.state_checks()

    async def state_checks(self) -> None:
        """Check every droplet each interval, staggered; renew, or queue lease work."""
        interval = self.settings.dwfm_check_interval_s
        start = time.monotonic()
        names = list(self.droplets)
        schedule = [(start + (i + 0.5) * interval / len(names), name)
                    for i, name in enumerate(names)]
        heapq.heapify(schedule)
        async with asyncio.TaskGroup() as renewals:
            while True:
                at, name = heapq.heappop(schedule)
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                now = self.now()
                if self.expires[name] > now:
                    renewals.create_task(self.renew(name))
                else:
                    if name not in self.lost_leases and self.expires[name] > 0:
                        self.lost_leases.add(name)
                        await self.record(events.LeaseLost(
                            host=self.holder, droplet=name, az=self.droplets[name].az))
                    ADMISSIONS.labels(self.queue.offer(name, now).value).inc()
                    self.work_ready.set()
                heapq.heappush(schedule, (at + interval, name))

    async def worker(self) -> None:
        while True:
            now = self.now()
            item = self.queue.take(now)
            if item is None:
                self.work_ready.clear()
                await self.work_ready.wait()
                continue
            if item.expired(now):
                WORK_STARTED_LATE.inc()
            task = asyncio.create_task(self.attempt(item))
            self.attempts.add(task)
            try:
                await asyncio.wait({task})  # a restart cancels the attempt, not the worker
            finally:
                self.attempts.discard(task)
                task.cancel()

    async def attempt(self, item: WorkItem) -> None:
        droplet = self.droplets[item.droplet]
        started = self.now()
        written = False
        try:
            await self.client.call("GetItem", {"TableName": DEFAULT_TABLE,
                                               "Key": self._key(droplet.name)})
            await asyncio.sleep(self.settings.dwfm_work_s
                                + self.instances[droplet.name]
                                * self.settings.dwfm_instance_work_s)
            now = self.now()
            await self.client.call("PutItem", {
                "TableName": DEFAULT_TABLE,
                "Item": {**self._key(droplet.name), "holder": {"S": self.holder},
                         "expires": {"N": f"{now + self.settings.lease_ttl_s:.3f}"},
                         "attempt": {"N": str(item.attempt)}},
                "ConditionExpression": "attribute_not_exists(pk) OR holder = :me "
                                       "OR expires < :now",
                "ExpressionAttributeValues": {":me": {"S": self.holder},
                                              ":now": {"N": f"{now:.3f}"}}})
            written = True
        except DynamoCallError as e:
            log.debug("lease work for %s failed: %s", droplet.name, e)
            await asyncio.sleep(FAILED_CALL_PAUSE_S)
        now = self.now()
        outcome = judge(item, written, now)
        if outcome is Outcome.LEASED:
            self.expires[droplet.name] = now + self.settings.lease_ttl_s
            self.leased_at.append(now)
            self.lost_leases.discard(droplet.name)
            await self.record(events.LeaseRegained(host=self.holder, droplet=droplet.name,
                                                   az=droplet.az, attempt=item.attempt))
        elif outcome is Outcome.VOID:
            WORK_EXPIRED.inc()
        WORK.labels(outcome.value).inc()
        retry = self.queue.finish(item, outcome, now, now - started)
        if retry is not None:
            ADMISSIONS.labels(retry.value).inc()

    async def gauges(self) -> None:
        dropped = 0
        while True:
            now = self.now()
            for az, count in self.held(now).items():
                LEASES_HELD.labels(az).set(count)
            while self.leased_at and self.leased_at[0] < now - GOODPUT_WINDOW_S:
                self.leased_at.popleft()
            GOODPUT.set(len(self.leased_at) / GOODPUT_WINDOW_S)
            QUEUE_DEPTH.set(len(self.queue))
            OLDEST_WORK_AGE.set(self.queue.oldest_age_s(now))
            for az in AZS:
                INSTANCES.labels(az).set(sum(n for name, n in self.instances.items()
                                             if self.droplets[name].az == az))
            ADMISSION_LIMIT.set(self.queue.admission_limit or 0)
            WORK.labels("dropped").inc(self.queue.stats.dropped - dropped)
            dropped = self.queue.stats.dropped
            await asyncio.sleep(0.5)
