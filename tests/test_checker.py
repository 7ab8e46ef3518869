"""The history checker on hand-written histories: pure, no I/O."""

from __future__ import annotations

from services.core import names
from services.core.checker import Invariant, check, format_report
from services.core.events import BatchCommitted, DnsAnswer, Event, TreeDeleted

E = names.REGIONAL


def flip(generation: int, previous: int, at: int, source: str = "enactor/use1-az2"
         ) -> BatchCommitted:
    return BatchCommitted(at_ms=at, source=source, endpoint=E, generation=generation,
                                  previous=previous, rollback=previous, serial=at)


def steady() -> list[Event]:
    events: list[Event] = []
    for g in range(1, 10):
        events.append(flip(g, g - 1, g * 100))
        events.append(DnsAnswer(at_ms=g * 100 + 50, endpoint=E, generation=g,
                                        addresses=3))
        if g > 6:
            events.append(TreeDeleted(at_ms=g * 100 + 60, tree=names.tree_name(g - 6, E),
                                              endpoint=E, generation=g - 6, live=False,
                                              serial=g * 100 + 60))
    return events


def race() -> list[Event]:
    return [
        flip(9, 8, 1000),
        flip(3, 9, 1100, source="enactor/use1-az1"),
        TreeDeleted(at_ms=1200, tree=names.tree_name(3, E), endpoint=E, generation=3,
                            live=True, serial=1200),
        DnsAnswer(at_ms=1300, endpoint=E, generation=3, addresses=0),
        DnsAnswer(at_ms=1400, endpoint=E, generation=3, addresses=0),
    ]


def test_a_steady_history_has_no_violation() -> None:
    events = steady()
    assert check(events) == []
    assert "no violation" in format_report([], events)


def test_the_race_violates_i1_i2_and_i3_with_witnesses_in_order() -> None:
    violations = check(race())
    assert [v.invariant for v in violations] == [
        Invariant.I2, Invariant.I3, Invariant.I1, Invariant.I1]
    stale_flip, deletion = violations[0].witnesses[0], violations[1].witnesses[0]
    assert isinstance(stale_flip, BatchCommitted) and stale_flip.generation == 3
    assert isinstance(deletion, TreeDeleted) and deletion.live
    assert violations[2].witnesses == [stale_flip, deletion]
    assert violations[3].repeats == 2  # the empty answers, seen twice, are one window
    report = format_report(violations, race())
    assert "flipped dynamodb.us-east-1.amazonaws.com from plan 9 BACK to plan 3" in report
    assert "WHILE AN ALIAS NAMED IT" in report


def test_the_race_is_found_in_commit_order_when_the_stale_flip_was_recorded_late() -> None:
    """Each enactor records its commits after them: the delayed enactor's stale flip can reach
    the history after the other enactor's clean-up that deleted its tree. The zone's serial
    says which committed first."""
    flip_9, stale_flip, deletion, *answers = race()
    violations = check([flip_9, deletion, stale_flip, *answers])
    assert [v.invariant for v in violations] == [
        Invariant.I2, Invariant.I3, Invariant.I1, Invariant.I1]
    assert violations[2].witnesses == [stale_flip, deletion]


def test_serving_an_older_generation_is_a_regression() -> None:
    events: list[Event] = [
        DnsAnswer(at_ms=1, endpoint=E, generation=5, addresses=2),
        DnsAnswer(at_ms=2, endpoint=E, generation=4, addresses=2),
    ]
    assert [v.invariant for v in check(events)] == [Invariant.I2]
