"""DWFM's work queue as pure decisions: lease work items, their deadlines, and who gets a worker.

Establishing (or re-establishing) a droplet's lease is a :class:`WorkItem` with a deadline
``deadline_s`` after it was queued; a lease written after the deadline is void and the work has
to be done again. A DWFM host serves its queue with a bounded pool of workers. Two policies:

- ``legacy`` (2025): every item is admitted; a worker takes the head of the queue whether its
  deadline has passed or not, does the whole work, and a void item is queued again at the tail
  with a fresh deadline. Above about ``2 * W * D / S`` waiting items nothing finishes in time
  any more: congestive collapse, which only an operator ends.
- ``queue_throttle`` (the fix AWS announced): admit new work only while the waiting queue is
  shorter than what the workers can finish within the deadline (``W * D / S``), and drop an item
  that can no longer finish in time without spending work on it; the droplet's next state check
  offers it again.

Nothing here reads a clock or does I/O: every call is given ``now_s`` (seconds on the caller's
clock), so the same code serves the DWFM process and the discrete-event model.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field


class Policy(enum.Enum):
    LEGACY = "legacy"
    QUEUE_THROTTLE = "queue_throttle"


class Offer(enum.Enum):
    """What became of work offered to the queue."""

    ADMITTED = "admitted"
    ALREADY_QUEUED = "already_queued"
    THROTTLED = "throttled"


class Outcome(enum.Enum):
    """How a worker's attempt at an item ended."""

    LEASED = "leased"
    """The lease was written before the deadline: goodput."""
    VOID = "void"
    """The lease was written after the deadline; the work was wasted."""
    FAILED = "failed"
    """A DynamoDB call failed (name empty, throttled, unreachable)."""


@dataclass(frozen=True)
class WorkItem:
    """Work to (re-)establish one droplet's lease."""

    droplet: str
    queued_s: float
    deadline_s: float
    attempt: int = 1

    def expired(self, now_s: float) -> bool:
        return now_s > self.deadline_s


def in_time_capacity(workers: int, deadline_s: float, service_s: float) -> int:
    """How many waiting items ``workers`` can finish within ``deadline_s`` (W * D / S)."""
    if workers < 1 or deadline_s <= 0 or service_s <= 0:
        raise ValueError("workers must be >= 1, deadline and service time > 0")
    return math.floor(workers * deadline_s / service_s + 1e-9)


@dataclass
class ServiceEstimate:
    """The expected service time of an item: a moving average of what attempts took."""

    service_s: float
    weight: float = 0.2

    def observe(self, took_s: float) -> None:
        if took_s > 0:
            self.service_s += self.weight * (took_s - self.service_s)


@dataclass
class QueueStats:
    admitted: int = 0
    throttled: int = 0
    leased: int = 0
    void: int = 0
    """Items worked on whose lease came too late (``dnsrace_dwfm_work_expired_total``)."""
    failed: int = 0
    dropped: int = 0
    """Items dropped unworked because they could no longer finish in time (throttle only)."""
    worked_after_deadline: int = 0
    """Items a worker started although their deadline had already passed (legacy only)."""


@dataclass
class WorkQueue:
    """A DWFM host's queue of lease work, FIFO, at most one item per droplet."""

    policy: Policy
    workers: int
    deadline_s: float
    estimate: ServiceEstimate
    items: deque[WorkItem] = field(default_factory=deque)
    queued: set[str] = field(default_factory=set)
    in_work: set[str] = field(default_factory=set)
    stats: QueueStats = field(default_factory=QueueStats)
    operator_rate_s: float | None = None
    """The operators' throttle (``dnsrace ec2 throttle``): work admitted per second, retries
    included; ``None``: off. What engineers did at 4:14 AM PDT, with no runbook."""
    _tokens: float = 0.0
    _refilled_s: float = 0.0

    def throttle(self, rate_per_s: float | None, now_s: float) -> None:
        """Set (or with ``None`` lift) the operators' rate limit on admitted work."""
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError("a throttle rate must be > 0 items per second")
        self.operator_rate_s = rate_per_s
        self._tokens, self._refilled_s = 0.0, now_s

    def _rate_allows(self, now_s: float) -> bool:
        rate = self.operator_rate_s
        if rate is None:
            return True
        self._tokens = min(max(rate, 1.0), self._tokens + (now_s - self._refilled_s) * rate)
        self._refilled_s = now_s
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def __len__(self) -> int:
        return len(self.items)

    @property
    def admission_limit(self) -> int | None:
        """Waiting items beyond which new work is refused; ``None``: no limit (legacy)."""
        if self.policy is Policy.LEGACY:
            return None
        return max(1, in_time_capacity(self.workers, self.deadline_s, self.estimate.service_s))

    def pending(self, droplet: str) -> bool:
        return droplet in self.queued or droplet in self.in_work

    def offer(self, droplet: str, now_s: float, attempt: int = 1) -> Offer:
        """Queue work for ``droplet`` (its lease is missing), unless refused."""
        if self.pending(droplet):
            return Offer.ALREADY_QUEUED
        limit = self.admission_limit
        if (limit is not None and len(self.items) >= limit) or not self._rate_allows(now_s):
            self.stats.throttled += 1
            return Offer.THROTTLED
        self.items.append(WorkItem(droplet, now_s, now_s + self.deadline_s, attempt))
        self.queued.add(droplet)
        self.stats.admitted += 1
        return Offer.ADMITTED

    def take(self, now_s: float) -> WorkItem | None:
        """The next item a free worker should work on, or ``None`` if there is none."""
        while self.items:
            item = self.items.popleft()
            self.queued.discard(item.droplet)
            if self.policy is Policy.QUEUE_THROTTLE and \
                    now_s + self.estimate.service_s > item.deadline_s:
                self.stats.dropped += 1
                continue
            if item.expired(now_s):
                self.stats.worked_after_deadline += 1
            self.in_work.add(item.droplet)
            return item
        return None

    def finish(self, item: WorkItem, outcome: Outcome, now_s: float, took_s: float) -> Offer | None:
        """Record how an attempt ended; void and failed work is offered again at once.

        ``outcome`` is judged by the caller from the DynamoDB calls; a lease that was written
        after ``item.deadline_s`` is :attr:`Outcome.VOID` whatever the calls said (see
        :func:`judge`). Returns what became of the retry, or ``None`` when the lease is held.
        """
        self.in_work.discard(item.droplet)
        if outcome is not Outcome.FAILED:
            self.estimate.observe(took_s)
        if outcome is Outcome.LEASED:
            self.stats.leased += 1
            return None
        if outcome is Outcome.VOID:
            self.stats.void += 1
        else:
            self.stats.failed += 1
        return self.offer(item.droplet, now_s, item.attempt + 1)

    def lost(self) -> int:
        """Forget every waiting item (a selective restart of the host); returns how many."""
        count = len(self.items)
        self.items.clear()
        self.queued.clear()
        return count

    def restart(self, unleased: list[str], now_s: float) -> tuple[int, int]:
        """A selective restart of the host: every waiting and in-flight item is lost, and the
        queue is rebuilt from the host's droplets, one fresh item per droplet in
        ``unleased`` (in that order, admitted as any new work is: the operators' throttle
        and ``queue_throttle`` still apply). Returns (items lost, items queued again)."""
        lost = len(self.items) + len(self.in_work)
        self.items.clear()
        self.queued.clear()
        self.in_work.clear()
        queued = sum(self.offer(d, now_s) is Offer.ADMITTED for d in unleased)
        return lost, queued

    def oldest_age_s(self, now_s: float) -> float:
        return now_s - self.items[0].queued_s if self.items else 0.0


def judge(item: WorkItem, written: bool, now_s: float) -> Outcome:
    """The outcome of an attempt whose lease write ended at ``now_s`` (``written``: it took)."""
    if not written:
        return Outcome.FAILED
    return Outcome.VOID if item.expired(now_s) else Outcome.LEASED


def operator_rate(body: object) -> float | None:
    """The rate an operators' throttle request names: ``{"rate": R}`` per second, or
    ``{"rate": null}`` for off. Raises KeyError, TypeError or ValueError on anything else."""
    rate = body["rate"]  # type: ignore[index]
    return None if rate is None else float(rate)
