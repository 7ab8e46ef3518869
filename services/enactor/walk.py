"""The walk of one plan over its endpoints, in windows: a pure state machine.

No sockets, no clock and no sleeping here. :class:`Walk` is told what the driver saw (a
window's records, the batches' outcomes, whether to stop, whether a ``lock_delay`` fault or a
stall before a flip is in force, the time) and answers with the next action: read a window,
send its change batches, wait for the batches on their way, record what was settled, back off
and retry one endpoint alone, pass a stall, or the end (``Done``: every endpoint settled;
``Stopped``: asked to stop first). :class:`~services.enactor.enactor.Enactor` only carries the
actions out; the tests and the interleaving explorer drive the very same machine.

A window is ``window`` endpoints: one round-trip reads them, one sends their batches (each its
own atomic batch with its lock and fences), one records their history. Whatever the
one-at-a-time walk of 2025 would do differently is done one at a time:

- an endpoint whose lock another enactor holds (a ``Backoff`` decision), or whose flip a stall
  names, ends the window before it (``window_cut``) and goes alone once everything before it
  is settled: it backs off first, or passes the stall first;
- while a ``lock_delay`` fault is in force, the next endpoint goes alone, backing off;
- an endpoint whose batch lost its lock (``lock_conflict``, ``lock_expired``) is retried alone
  after its back-off; the others that lost with it (to the same competitor at the same moment,
  where the one-at-a-time walk would have reached them only after that back-off) are read and
  walked again, and back off only if their lock is still held then; a window read meanwhile is
  read again.

Outcomes may come back at once (the reply to ``SendWindow`` carries them) or later (``None``:
the batches are on their way). Later, the walk reads the next window while they commit and asks
for them (``AwaitSent``) before it sends more, so commits keep the plan's order. At once, every
window is settled before the next is read: with ``window=1`` that is the one-at-a-time walk,
round-trip for round-trip (read, send, record, next).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from typing import TypeGuard

from services.core import names
from services.core.records import (
    ChangeBatch,
    Committed,
    EndpointRecords,
    Rejected,
    RejectReason,
    WeightedAddress,
)
from services.enactor.decisions import (
    Backoff,
    Commit,
    Decision,
    Policy,
    Refuse,
    Skip,
    decide_endpoint,
    window_cut,
)

Addresses = tuple[WeightedAddress, ...]
"""The weighted addresses a plan gives one endpoint."""
Item = tuple[str, Addresses]
"""One endpoint of the plan and its addresses."""
Outcome = Committed | Rejected

LOCK_LOSSES = frozenset({RejectReason.LOCK_CONFLICT, RejectReason.LOCK_EXPIRED})
"""Rejections that mean the batch lost its lock: it is retried after a back-off."""


def lost_the_lock(outcome: Outcome) -> TypeGuard[Rejected]:
    """Did this batch lose its lock (rather than commit, or fail for good)?"""
    return isinstance(outcome, Rejected) and outcome.reason in LOCK_LOSSES


class RetryReason(StrEnum):
    """Why an endpoint backs off before it is tried again (the ``LockLost`` event's reason)."""

    LOCK_HELD = "lock_held"
    """Another enactor's lock was seen held when the endpoint was read."""
    LOCK_DELAY = "lock_delay"
    """A ``lock_delay`` fault is in force."""
    LOCK_CONFLICT = RejectReason.LOCK_CONFLICT.value
    """The batch was rejected: another enactor took the lock after the read."""
    LOCK_EXPIRED = RejectReason.LOCK_EXPIRED.value
    """The batch was rejected: its lock lease ended before it committed (fenced)."""


# -- actions: what the driver does next -------------------------------------------------------

@dataclass(frozen=True)
class ReadWindow:
    """Read these endpoints, each with this plan's tree, in one round-trip.

    Reply with ``views`` in order, ``stalled`` (a stall names the endpoint's flip) and
    ``now_ms``, the time the views are judged at.
    """

    requests: tuple[tuple[str, str], ...]
    """(endpoint, tree name) pairs."""

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(endpoint for endpoint, _ in self.requests)


@dataclass(frozen=True)
class SendWindow:
    """Send these change batches in one pipeline, in order, each its own atomic commit.

    Reply with their ``outcomes``, or none yet (they are on their way: see ``AwaitSent``).
    """

    batches: tuple[ChangeBatch, ...]


@dataclass(frozen=True)
class AwaitSent:
    """Wait for the batches on their way; reply with their ``outcomes``."""


@dataclass(frozen=True)
class Settled:
    """One endpoint done with: refused by plan validation, or its batch committed or rejected."""

    endpoint: str
    decision: Commit | Refuse
    outcome: Outcome | None
    """None for a refusal (no batch was sent)."""


@dataclass(frozen=True)
class Record:
    """Record these endpoints' results in the history, in plan order (one round-trip)."""

    settled: tuple[Settled, ...]


@dataclass(frozen=True)
class RetryAlone:
    """Back off (the ``attempt``-th back-off of this endpoint), then retry it alone."""

    endpoint: str
    attempt: int
    reason: RetryReason


@dataclass(frozen=True)
class Stall:
    """Pass the before-flip checkpoint of this endpoint: a stall names it."""

    endpoint: str


@dataclass(frozen=True)
class Done:
    """Every endpoint of the plan is settled: the plan is applied."""


@dataclass(frozen=True)
class Stopped:
    """Asked to stop before every endpoint was settled: the plan is not applied."""


Action = ReadWindow | SendWindow | AwaitSent | Record | RetryAlone | Stall | Done | Stopped


@dataclass(frozen=True)
class Reply:
    """What the driver tells the walk after an action: what came back, and the world now."""

    stopping: bool = False
    lock_delayed: bool = False
    """A ``lock_delay`` fault is in force for this enactor."""
    views: tuple[EndpointRecords, ...] = ()
    """ReadWindow: the endpoints' records, in order."""
    stalled: tuple[bool, ...] = ()
    """ReadWindow: a stall names each endpoint's flip (before_flip, this plan)."""
    now_ms: int = 0
    """ReadWindow: when the views are judged (lock expiry, a fenced batch's lease)."""
    outcomes: tuple[Outcome, ...] | None = None
    """SendWindow: the outcomes, or None while the batches are on their way; AwaitSent."""


# -- the machine ------------------------------------------------------------------------------

@dataclass
class _Sent:
    """A window whose batches were sent: what each endpoint's decision was, and the outcomes."""

    items: list[Item]
    decisions: list[Decision]
    outcomes: tuple[Outcome, ...] | None = None
    """Of the Commit decisions, in order; None while on their way."""

    @property
    def batches(self) -> tuple[ChangeBatch, ...]:
        return tuple(d.batch for d in self.decisions if isinstance(d, Commit))

    def lost_a_lock(self) -> bool:
        return any(lost_the_lock(outcome) for outcome in self.outcomes or ())


Steps = Generator[Action, None, None]
"""A part of the walk: yields actions; each is resumed with ``Walk.reply`` set to the reply."""


class Walk:
    """Applying plan ``generation`` to ``items`` in order, ``window`` endpoints at a time.

    Call :meth:`next` with a :class:`Reply` to the last action (the first: the world now) until
    it answers ``Done`` or ``Stopped``; every action before it must be carried out, in order.
    """

    def __init__(self, generation: int, items: Sequence[Item], policy: Policy,
                 window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1 endpoint, not {window}")
        self.generation = generation
        self.items = tuple(items)
        self.policy = policy
        self.window = window
        self.settled = 0
        """Endpoints done with (skipped, refused, committed or rejected for good)."""
        self.reply = Reply()
        self._steps = self._walk(self.items)
        self._end: Done | Stopped | None = None

    def next(self, reply: Reply) -> Action:
        """The next action, given the reply to the last one."""
        self.reply = reply
        if self._end is None:
            try:
                return self._steps.send(None)
            except StopIteration:
                applied = self.settled == len(self.items)
                self._end = Done() if applied else Stopped()
        return self._end

    # -- the parts, each a generator of actions ----------------------------------------------

    def _walk(self, items: Sequence[Item]) -> Steps:
        """Walk ``items`` in windows (the plan, or endpoints that lost their locks together)."""
        queue = deque(items)
        sent: _Sent | None = None
        while True:
            if sent is not None and sent.outcomes is not None:
                # Its outcomes came back with the reply: record them (and retry lost locks) now.
                yield from self._settle(sent)
                sent = None
            if not queue or self.reply.stopping:
                break
            if self.reply.lock_delayed:
                yield from self._settle(sent)
                sent = None
                yield from self._alone(queue.popleft(), attempt=0)  # backs off first
                continue
            window = list(islice(queue, self.window))
            yield self._read(window)
            decisions = [self._decide(item, view)
                         for item, view in zip(window, self.reply.views, strict=True)]
            stalled = self.reply.stalled
            cut = window_cut(decisions, stalled)
            if sent is not None:  # on its way while this window was read: wait for it
                yield AwaitSent()
                sent.outcomes = self.reply.outcomes
                if sent.lost_a_lock():
                    yield from self._settle(sent)  # retried alone, backing off first
                    sent = None
                    continue  # time passed: read this window again
            previous, sent = sent, _Sent(window[:cut], decisions[:cut])
            for _ in range(cut):
                queue.popleft()
            if sent.batches:
                yield SendWindow(sent.batches)
                sent.outcomes = self.reply.outcomes
            else:
                sent.outcomes = ()
            yield from self._settle(previous)  # its locks were all won: only its history
            if cut < len(window):
                retried = yield from self._settle(sent)
                sent = None
                item, decision = queue.popleft(), decisions[cut]
                if isinstance(decision, Backoff):
                    yield RetryAlone(item[0], 0, RetryReason.LOCK_HELD)
                    yield from self._alone(item, attempt=1)
                else:  # the stall before its flip; time passed if a retry came first
                    yield from self._alone(item, 0, None if retried else (decision, True))
        yield from self._settle(sent)

    def _settle(self, sent: _Sent | None) -> Generator[Action, None, bool]:
        """Record what a sent window did, in endpoint order; True if a batch lost its lock.

        The first endpoint that lost is retried alone after its back-off; the others that lost
        with it are walked again, after it.
        """
        if sent is None:
            return False
        if sent.outcomes is None:
            yield AwaitSent()
            sent.outcomes = self.reply.outcomes
        assert sent.outcomes is not None, "AwaitSent is answered with the outcomes"
        settled: list[Settled] = []
        lost: list[tuple[Item, RetryReason]] = []
        outcomes = iter(sent.outcomes)
        for item, decision in zip(sent.items, sent.decisions, strict=True):
            if isinstance(decision, Skip):
                self.settled += 1
                continue
            if isinstance(decision, Refuse):
                settled.append(Settled(item[0], decision, None))
                self.settled += 1
                continue
            assert isinstance(decision, Commit), "a window ends before a held lock"
            outcome = next(outcomes)
            if lost_the_lock(outcome):
                lost.append((item, RetryReason(outcome.reason)))
            else:
                settled.append(Settled(item[0], decision, outcome))
                self.settled += 1
        if settled:
            yield Record(tuple(settled))
        if not lost:
            return False
        if self.reply.stopping:
            return True  # no retry: the walk ends Stopped, those endpoints unsettled
        (first, reason), rest = lost[0], [item for item, _ in lost[1:]]
        yield RetryAlone(first[0], 0, reason)
        yield from self._alone(first, attempt=1)
        yield from self._walk(rest)
        return True

    def _alone(self, item: Item, attempt: int,
               decided: tuple[Decision, bool] | None = None) -> Steps:
        """One endpoint alone, backing off and retrying until it is settled or the walk stops.

        ``decided``: its decision and stall from a window read just before (not read again).
        """
        endpoint = item[0]
        while not self.reply.stopping:
            if decided is not None:
                (decision, stalled), decided = decided, None
            elif self.reply.lock_delayed:
                yield RetryAlone(endpoint, attempt, RetryReason.LOCK_DELAY)
                attempt += 1
                continue
            else:
                yield self._read([item])
                decision, stalled = self._decide(item, self.reply.views[0]), self.reply.stalled[0]
            if isinstance(decision, Skip):
                self.settled += 1
                return
            if isinstance(decision, Refuse):
                yield Record((Settled(endpoint, decision, None),))
                self.settled += 1
                return
            if isinstance(decision, Backoff):
                yield RetryAlone(endpoint, attempt, RetryReason.LOCK_HELD)
                attempt += 1
                continue
            if stalled:
                yield Stall(endpoint)
            yield SendWindow((decision.batch,))
            if self.reply.outcomes is None:
                yield AwaitSent()
            assert self.reply.outcomes is not None, "AwaitSent is answered with the outcomes"
            outcome = self.reply.outcomes[0]
            if lost_the_lock(outcome):
                yield RetryAlone(endpoint, attempt, RetryReason(outcome.reason))
                attempt += 1
                continue
            yield Record((Settled(endpoint, decision, outcome),))
            self.settled += 1
            return

    def _read(self, window: Sequence[Item]) -> ReadWindow:
        return ReadWindow(tuple((endpoint, names.tree_name(self.generation, endpoint))
                                for endpoint, _ in window))

    def _decide(self, item: Item, view: EndpointRecords) -> Decision:
        endpoint, addresses = item
        return decide_endpoint(self.generation, endpoint, addresses, view, self.policy,
                               self.reply.now_ms)
