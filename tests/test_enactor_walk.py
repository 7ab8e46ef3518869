"""The windowed walk as a pure state machine: no Redis, no clock, no sleeping.

A script answers the walk's actions as a zone would (each endpoint's records per read, each
batch's outcome per send), and the walk's actions are written down in a few words each
(``read 0 1 2``: the endpoints by their place in the plan). What is checked is what a user
of the cluster sees: which endpoints go in a window, what ends a window, which endpoint backs
off and is retried alone, what is read again, and that a window of 1 is the 2025 walk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import names
from services.core.records import (
    Alias,
    ChangeBatch,
    Committed,
    EndpointRecords,
    Lock,
    RecordType,
    Rejected,
    RejectReason,
    WeightedAddress,
    a_records,
    alias_record,
    lock_record,
)
from services.enactor.decisions import Policy
from services.enactor.walk import (
    Action,
    AwaitSent,
    Done,
    ReadWindow,
    Record,
    Reply,
    RetryAlone,
    SendWindow,
    Stall,
    Stopped,
    Walk,
)

A, B = names.AZS[:2]
GENERATION = 2
ENDPOINTS = names.endpoints(3)  # six: the three named endpoints and three cells
ADDRS = (WeightedAddress("127.0.10.1", 100),)
NOW_MS = 1_000_000


def records(endpoint: str, kind: str) -> EndpointRecords:
    """``free``: plan 1 live, no lock; ``held``: the same, another enactor holds the lock;
    ``applied``: plan 2 already live."""
    live = 2 if kind == "applied" else 1
    tree = a_records(names.tree_name(live, endpoint), ADDRS).value
    lock = (lock_record(names.lock_name(endpoint), Lock(B, NOW_MS + 60_000)).value
            if kind == "held" else None)
    alias = alias_record(endpoint, Alias(names.tree_name(live, endpoint), live)).value
    return EndpointRecords(alias, tree, None, None, lock, tree if live == 2 else None)


def outcome(kind: str) -> Committed | Rejected:
    if kind == "ok":
        return Committed(serial=1, at_ms=NOW_MS)
    if kind == "lost":
        return Rejected(RejectReason.LOCK_CONFLICT, 1, "the lock holds a different value")
    return Rejected(RejectReason.ALIAS_TARGET_MISSING, 3, "the tree is gone")


def place(endpoint: str) -> str:
    return str(ENDPOINTS.index(endpoint))


@dataclass
class Script:
    """Answers the walk as a zone would; writes its actions down in a few words each."""

    views: Mapping[int, Sequence[str]] = field(default_factory=dict)
    """Endpoint -> what each read of it finds, in turn (then ``free``)."""
    outcomes: Mapping[int, Sequence[str]] = field(default_factory=dict)
    """Endpoint -> each send's outcome, in turn (then ``ok``)."""
    stalled: set[int] = field(default_factory=set)
    """Endpoints whose flip a stall names (until the walk has stalled there)."""
    overlap: bool = False
    """Batches come back later (``AwaitSent``), as in the cluster; else with the reply."""
    delayed: int = 0
    """A lock_delay fault is in force for this many replies."""
    stop_after: str = ""
    """Ask the walk to stop once it took this action."""
    said: list[str] = field(default_factory=list)
    walk: Walk = field(init=False)
    reads: dict[int, int] = field(default_factory=dict)
    sends: dict[int, int] = field(default_factory=dict)

    def _view(self, index: int) -> EndpointRecords:
        seen = self.reads.get(index, 0)
        self.reads[index] = seen + 1
        kinds = self.views.get(index, ())
        return records(ENDPOINTS[index], kinds[seen] if seen < len(kinds) else "free")

    def _outcome(self, index: int) -> Committed | Rejected:
        sent = self.sends.get(index, 0)
        self.sends[index] = sent + 1
        kinds = self.outcomes.get(index, ())
        return outcome(kinds[sent] if sent < len(kinds) else "ok")

    def play(self, window: int, count: int = len(ENDPOINTS)) -> list[str]:
        self.walk = Walk(GENERATION, [(e, ADDRS) for e in ENDPOINTS[:count]], Policy(A),
                         window)
        reply = self._reply()
        on_its_way: tuple[Committed | Rejected, ...] | None = None
        while len(self.said) < 200:
            action = self.walk.next(reply)
            self.said.append(words(action))
            if isinstance(action, Done | Stopped):
                return self.said
            if isinstance(action, ReadWindow):
                indices = [ENDPOINTS.index(e) for e in action.endpoints]
                reply = self._reply(views=tuple(self._view(i) for i in indices),
                                    stalled=tuple(i in self.stalled for i in indices))
                continue
            outcomes: tuple[Committed | Rejected, ...] | None = None
            if isinstance(action, SendWindow):
                outcomes = tuple(self._outcome(ENDPOINTS.index(sent_to(b)))
                                 for b in action.batches)
                if self.overlap:
                    on_its_way, outcomes = outcomes, None
            elif isinstance(action, AwaitSent):
                assert on_its_way is not None, "awaited batches that were not on their way"
                outcomes, on_its_way = on_its_way, None
            elif isinstance(action, Stall):
                self.stalled.discard(ENDPOINTS.index(action.endpoint))
            reply = self._reply(outcomes=outcomes)
        raise AssertionError(f"the walk did not end: {self.said[-10:]}")

    def _reply(self, views: tuple[EndpointRecords, ...] = (), stalled: tuple[bool, ...] = (),
               outcomes: tuple[Committed | Rejected, ...] | None = None) -> Reply:
        delayed = self.delayed > 0
        self.delayed -= 1
        stopping = bool(self.stop_after) and self.stop_after in self.said
        return Reply(stopping, delayed, views, stalled, NOW_MS, outcomes)


def sent_to(batch: ChangeBatch) -> str:
    return next(c.rrset.name for c in batch.changes
                if c.rrset.type is RecordType.ALIAS and c.rrset.name in ENDPOINTS)


def words(action: Action) -> str:
    match action:
        case ReadWindow():
            return "read " + " ".join(place(e) for e in action.endpoints)
        case SendWindow(batches):
            return "send " + " ".join(place(sent_to(b)) for b in batches)
        case AwaitSent():
            return "await"
        case Record(settled):
            return "record " + " ".join(place(s.endpoint) for s in settled)
        case RetryAlone(endpoint, attempt, reason):
            return f"back off {place(endpoint)} {reason} #{attempt}"
        case Stall(endpoint):
            return f"stall {place(endpoint)}"
        case Done():
            return "done"
    return "stopped"


# -- what ends a window ------------------------------------------------------------------------

def test_a_window_without_held_locks_or_stalls_goes_whole() -> None:
    assert Script().play(window=4) == [
        "read 0 1 2 3", "send 0 1 2 3", "record 0 1 2 3",
        "read 4 5", "send 4 5", "record 4 5", "done"]


def test_a_held_lock_cuts_the_window_and_that_endpoint_goes_alone_after_backing_off() -> None:
    assert Script(views={2: ["held", "held"]}).play(window=4) == [
        "read 0 1 2 3", "send 0 1", "record 0 1",
        "back off 2 lock_held #0", "read 2", "back off 2 lock_held #1", "read 2", "send 2",
        "record 2",
        "read 3 4 5", "send 3 4 5", "record 3 4 5", "done"]


def test_a_pending_stall_cuts_the_window_and_stalls_right_before_that_flip() -> None:
    # Everything before it is committed first; its batch is the one decided before the stall
    # (the 2025 walk: read, stall, flip), not a fresh read.
    assert Script(stalled={2}).play(window=4) == [
        "read 0 1 2 3", "send 0 1", "record 0 1", "stall 2", "send 2", "record 2",
        "read 3 4 5", "send 3 4 5", "record 3 4 5", "done"]


def test_a_lock_delay_makes_the_next_endpoint_back_off_alone() -> None:
    assert Script(delayed=3).play(window=4) == [
        "back off 0 lock_delay #0", "back off 0 lock_delay #1", "back off 0 lock_delay #2",
        "read 0", "send 0", "record 0", "read 1 2 3 4", "send 1 2 3 4", "record 1 2 3 4",
        "read 5", "send 5", "record 5", "done"]


# -- a lost lock ---------------------------------------------------------------------------------

def test_a_lost_lock_is_retried_alone_after_back_off_and_the_others_lost_are_read_again() -> None:
    # 1 and 3 lost their locks at once: 1 backs off and goes alone; 3 is read again after it
    # and goes straight on, its lock free by then (a one-at-a-time walk would have reached it
    # only after 1's back-off).
    script = Script(outcomes={1: ["lost"], 3: ["lost"]})
    assert script.play(window=6) == [
        "read 0 1 2 3 4 5", "send 0 1 2 3 4 5", "record 0 2 4 5",
        "back off 1 lock_conflict #0", "read 1", "send 1", "record 1",
        "read 3", "send 3", "record 3", "done"]
    # Still held when read again: then it backs off too.
    script = Script(outcomes={1: ["lost"], 3: ["lost"]}, views={3: ["free", "held"]})
    assert script.play(window=6)[7:] == [
        "read 3", "back off 3 lock_held #0", "read 3", "send 3", "record 3", "done"]


def test_a_rejection_for_good_is_recorded_and_the_walk_goes_on() -> None:
    # 1 is rejected for good (its tree is gone), 2 is already on this plan (nothing to send).
    said = Script(outcomes={1: ["gone"]}, views={2: ["applied"]}).play(window=4)
    assert said == ["read 0 1 2 3", "send 0 1 3", "record 0 1 3", "read 4 5", "send 4 5",
                    "record 4 5", "done"]


# -- the cluster's overlap: the next window read while the last one commits ---------------------

def test_with_overlap_the_next_window_is_read_while_the_last_one_commits() -> None:
    assert Script(overlap=True).play(window=2) == [
        "read 0 1", "send 0 1",
        "read 2 3", "await", "send 2 3", "record 0 1",
        "read 4 5", "await", "send 4 5", "record 2 3",
        "await", "record 4 5", "done"]


def test_with_overlap_a_window_read_while_a_lock_was_lost_is_read_again() -> None:
    assert Script(overlap=True, outcomes={1: ["lost"]}).play(window=2) == [
        "read 0 1", "send 0 1", "read 2 3", "await", "record 0",
        "back off 1 lock_conflict #0", "read 1", "send 1", "await", "record 1",
        "read 2 3", "send 2 3", "read 4 5", "await", "send 4 5", "record 2 3",
        "await", "record 4 5", "done"]


# -- window 1 is the one-at-a-time walk ------------------------------------------------------

ONE_AT_A_TIME = [
    "read 0", "send 0", "record 0",
    "read 1", "back off 1 lock_held #0", "read 1", "send 1", "record 1",
    "read 2", "send 2", "back off 2 lock_conflict #0", "read 2", "send 2", "record 2",
    "read 3", "stall 3", "send 3", "record 3",
    "done"]
"""The 2025 walk, endpoint after endpoint: read it; back off while its lock is held; stall
before its flip if a stall names it; send its batch; back off and start again if the batch
lost its lock; record it; next."""


def test_window_1_is_the_one_at_a_time_walk() -> None:
    script = Script(views={1: ["held"]}, outcomes={2: ["lost"]}, stalled={3})
    assert script.play(window=1, count=4) == ONE_AT_A_TIME


@settings(max_examples=200, deadline=None)
@given(window=st.integers(1, 7), overlap=st.booleans(),
       lost=st.dictionaries(st.integers(0, 5), st.lists(st.sampled_from(["lost", "ok"]),
                                                        max_size=3)),
       held=st.dictionaries(st.integers(0, 5), st.lists(st.sampled_from(["held", "free"]),
                                                        max_size=3)))
def test_every_endpoint_is_settled_once_and_window_1_has_one_endpoint_in_flight(
        window: int, overlap: bool, lost: dict[int, list[str]],
        held: dict[int, list[str]]) -> None:
    script = Script(views=held, outcomes=lost, overlap=overlap)
    said = script.play(window)
    assert said[-1] == "done" and script.walk.settled == len(ENDPOINTS)
    recorded = [e for line in said if line.startswith("record") for e in line.split()[1:]]
    assert sorted(recorded) == [str(i) for i in range(len(ENDPOINTS))]
    if window == 1 and not overlap:
        # Every endpoint is read, sent and recorded before the next one is read.
        order = [line.split()[-1] for line in said
                 if line.split()[0] in ("read", "send", "record")]
        firsts = [order.index(str(i)) for i in range(len(ENDPOINTS))]
        lasts = [len(order) - 1 - order[::-1].index(str(i)) for i in range(len(ENDPOINTS))]
        assert all(lasts[i] < firsts[i + 1] for i in range(len(ENDPOINTS) - 1))


# -- a stop ------------------------------------------------------------------------------------

def test_a_stop_during_a_lock_retry_ends_the_walk_stopped_not_done() -> None:
    script = Script(views={5: ["held"] * 10}, stop_after="back off 5 lock_held #1")
    assert script.play(window=6) == [
        "read 0 1 2 3 4 5", "send 0 1 2 3 4", "record 0 1 2 3 4",
        "back off 5 lock_held #0", "read 5", "back off 5 lock_held #1", "stopped"]
    assert script.walk.settled == 5
    # A stop that arrives with a lost lock's outcome: no back-off, the endpoint stays undone.
    script = Script(outcomes={5: ["lost"]}, stop_after="send 0 1 2 3 4 5")
    assert script.play(window=6) == ["read 0 1 2 3 4 5", "send 0 1 2 3 4 5",
                                     "record 0 1 2 3 4", "stopped"]


def test_a_stop_after_every_endpoint_was_sent_still_ends_done() -> None:
    script = Script(stop_after="send 0 1 2 3 4 5")
    assert script.play(window=6) == ["read 0 1 2 3 4 5", "send 0 1 2 3 4 5",
                                     "record 0 1 2 3 4 5", "done"]
