"""The interleaving explorer: the real enactors on a real Redis, one round-trip at a time.

Pure tiers first (the invariants on hand-made zones, the scheduler with toy actors), then the
explorer itself on the embedded Redis, at the cluster's window of 512 endpoints and one at a
time: legacy breaks the way October 2025 did, the stored counterexamples still break (so a
passing safe run is not vacuous), safe holds over every schedule explored, and each protection
alone holds only some invariants.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from services.config import Protection
from services.core import names
from services.core.invariants import Invariant, ZoneWatch
from services.core.records import Alias, RecordType, ZoneSnapshot, alias_record
from services.explorer.command import explore_in_processes, fast_client, main
from services.explorer.report import load_replay
from services.explorer.scheduler import Chooser, ReplayDiverged, Scheduler
from services.explorer.search import (
    ReplayChooser,
    Strategy,
    decode,
    encode,
    exhaustive_schedules,
    explore,
    replay,
)
from services.explorer.trace import LineKind, TraceLine, trace
from services.explorer.world import CLUSTER_WINDOW, ExploreConfig, Lab, ScheduleRecord
from services.runtime.redis_server import EmbeddedRedis

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_counterexample.json"
"""Found one endpoint at a time (window 1)."""
FIXTURE_512 = FIXTURE.with_name("legacy_counterexample_window512.json")
"""Found at the cluster's window."""
WINDOWS = pytest.mark.parametrize("window", [1, CLUSTER_WINDOW],
                                  ids=["one_at_a_time", f"window_{CLUSTER_WINDOW}"])
E = names.REGIONAL
I1, I2, I3 = Invariant.I1, Invariant.I2, Invariant.I3
MakeLab = Callable[[ExploreConfig], Lab]


# -- invariants on hand-made zones (no I/O) -------------------------------------------------

def zone(alias: int | None, rollback: int | None = None, trees: Sequence[int] = ()
         ) -> ZoneSnapshot:
    rrsets = {}
    for name, generation in ((E, alias), (names.rollback_name(E), rollback)):
        if generation is not None:
            rrset = alias_record(name, Alias(names.tree_name(generation, E), generation))
            rrsets[f"{name}|{RecordType.ALIAS}"] = rrset.value
    for generation in trees:
        rrsets[f"{names.tree_name(generation, E)}|A"] = json.dumps(
            {"records": [{"ip": "127.0.10.1", "weight": 100}]})
    return ZoneSnapshot(1, rrsets)


def test_an_alias_naming_a_deleted_tree_is_an_empty_answer_and_a_live_delete() -> None:
    watch = ZoneWatch((E,))
    assert watch.observe(zone(4, 1, trees=(1, 4))) == []
    found = watch.observe(zone(4, 1, trees=(1,)), live_deleted=(names.tree_name(4, E),))
    assert [v.invariant for v in found] == [I1, I3]
    assert found[0].text.startswith(f"I1: {E} answers no address")
    assert "while the alias of" in found[1].text


def test_going_back_to_an_older_plan_is_a_regression() -> None:
    watch = ZoneWatch((E,))
    watch.observe(zone(4, trees=(4,)))
    found = watch.observe(zone(1, 4, trees=(1, 4)))
    assert [(v.invariant, v.text) for v in found] == [
        (I2, f"I2: {E} went back from plan 4 to plan 1")]


def test_a_rollback_naming_a_deleted_tree_breaks_only_i3() -> None:
    found = ZoneWatch((E,)).observe(zone(4, 1, trees=(4,)), (names.tree_name(1, E),))
    assert [v.invariant for v in found] == [I3]
    assert "the rollback of" in found[0].text
    assert ZoneWatch((E,), frozenset({I1, I2})).observe(zone(4, 1, trees=(4,))) == []


# -- the scheduler with toy actors (no Redis) -------------------------------------------------

async def play_toys(chooser: Chooser, steps: Sequence[int], log: list[tuple[int, int]],
                    sleeps: dict[int, float] | None = None) -> ScheduleRecord:
    sched = Scheduler(tuple(f"a{i}" for i in range(len(steps))), epoch_ms=0)

    async def actor(index: int) -> None:
        for step in range(steps[index]):
            await sched.turn(index)
            log.append((index, step))
            await asyncio.sleep(0)  # really yields: nobody else may run before our next gate
            if sleeps and index in sleeps:
                await sched.sleeper(index)(sleeps[index])

    await sched.run([actor(i) for i in range(len(steps))], chooser)
    return ScheduleRecord(tuple(sched.choices), [], [], False, sched.now_ms)


async def test_exactly_the_chosen_actor_runs_between_two_gates() -> None:
    log: list[tuple[int, int]] = []
    record = await play_toys(ReplayChooser([1, 0, 2, 1, 0, 2]), (2, 2, 2), log)
    assert log == [(1, 0), (0, 0), (2, 0), (1, 1), (0, 1), (2, 1)]
    assert encode(record.choices) == "102102" and decode("1,0 2") == (1, 0, 2)


async def test_a_sleeping_actor_waits_for_the_logical_clock_which_jumps_when_all_sleep() -> None:
    log: list[tuple[int, int]] = []
    # Actor 1 sleeps 5 s after each step: only actor 0 can run until it is done, then the
    # clock jumps to actor 1's wake time instead of spinning.
    record = await play_toys(ReplayChooser([1, 0, 0, 1]), (2, 2), log, sleeps={1: 5.0})
    assert log == [(1, 0), (0, 0), (0, 1), (1, 1)]
    assert record.end_ms == 100 + 5_000 + 100
    with pytest.raises(ReplayDiverged, match="step 1: actor 1 cannot run"):
        await play_toys(ReplayChooser([1, 1]), (2, 2), [], sleeps={1: 5.0})


class Recording:
    """Wraps a chooser, counting preemptions the way the exhaustive search defines them."""

    def __init__(self, inner: Chooser) -> None:
        self.inner = inner
        self.preemptions = 0

    def choose(self, step: int, enabled: Sequence[int], current: int | None) -> int:
        choice = self.inner.choose(step, enabled, current)
        self.preemptions += current in enabled and choice != current
        return choice


@pytest.mark.parametrize(("bound", "expected"), [(0, 2), (1, 4), (2, 6)])
async def test_exhaustive_search_enumerates_each_bounded_schedule_once(
        bound: int, expected: int) -> None:
    seen: dict[str, int] = {}

    async def play(chooser: Chooser) -> ScheduleRecord:
        recording = Recording(chooser)
        record = await play_toys(recording, (2, 2), [])
        seen[encode(record.choices)] = recording.preemptions
        return record

    done: list[bool] = []
    count = len([r async for r in exhaustive_schedules(play, bound, 100, done)])
    assert done == [True] and count == len(seen) == expected
    assert max(seen.values()) <= bound


# -- the explorer on a real Redis ---------------------------------------------------------------

@pytest.fixture
async def make_lab(redis_server: EmbeddedRedis, prefix: str) -> AsyncIterator[MakeLab]:
    client = fast_client(redis_server.url)
    labs: list[Lab] = []

    def make(config: ExploreConfig) -> Lab:
        labs.append(Lab(client, f"{prefix}-{len(labs)}", config))
        return labs[-1]

    yield make
    for lab in labs:
        await lab.reset()
    await client.aclose()


def assert_the_incident(lines: list[TraceLine], endpoint: str | None = None) -> None:
    """A stale flip of an endpoint, then clean-up deleting that very tree, then I1 or I3.

    ``endpoint``: the one the story is about (else the first flipped back).
    """
    flips = [i for i, line in enumerate(lines) if line.kind is LineKind.STALE_FLIP
             and endpoint in (None, line.endpoint)]
    assert flips, "no enactor flipped an endpoint back to an older plan"
    stale = lines[flips[0]]
    deletes = [i for i, line in enumerate(lines) if line.kind is LineKind.LIVE_DELETE
               and (line.endpoint, line.generation) == (stale.endpoint, stale.generation)]
    assert deletes and deletes[0] > flips[0], "the stale plan's tree was not deleted after"
    deleted = lines[deletes[0]]
    assert f"deletes {names.tree_name(stale.generation, stale.endpoint)} " in deleted.text
    violation = lines[-1]
    assert violation.kind is LineKind.VIOLATION and violation.endpoint == stale.endpoint
    assert violation.text.startswith(("I1:", "I3:"))
    assert violation.step == deleted.step  # found at the very deletion step


@WINDOWS
async def test_legacy_explore_finds_the_outage(make_lab: MakeLab, window: int) -> None:
    lab = make_lab(ExploreConfig(mode="legacy", invariants=(I1,), window=window))
    result = await explore(lab, "random", schedules=3000, seed=0, stop_after=1)
    assert result.shortest is not None, f"no empty answer in {result.schedules} schedules"
    found = result.shortest
    assert {v.invariant for v in found.violations} == {I1}
    assert_the_incident(trace(found.record))
    again = await replay(lab, found.record.choices)  # the reported choices replay it
    assert trace(again) == trace(found.record)


@WINDOWS
async def test_legacy_breaks_within_one_preemption_when_every_invariant_counts(
        make_lab: MakeLab, window: int) -> None:
    lab = make_lab(ExploreConfig(mode="legacy", window=window))
    result = await explore(lab, "exhaustive", schedules=6144, preemptions=1, stop_after=1)
    assert result.shortest is not None
    assert {v.invariant for v in result.shortest.violations} <= {I2, I3}


@pytest.mark.parametrize(("fixture", "window"), [(FIXTURE, 1), (FIXTURE_512, CLUSTER_WINDOW)],
                         ids=["one_at_a_time", f"window_{CLUSTER_WINDOW}"])
async def test_the_stored_counterexample_still_empties_the_name(
        make_lab: MakeLab, fixture: Path, window: int) -> None:
    stored = json.loads(fixture.read_text())
    config, choices = load_replay(str(fixture), ExploreConfig())
    assert config.mode == "legacy" and config.active_protections == ()
    assert config.window == window
    record = await replay(make_lab(config), choices)
    assert record.steps == len(choices) == stored["steps"]
    assert [v.text for v in record.violations] == stored["violations"]
    assert any(v.invariant is I1 for v in record.violations)
    assert_the_incident(trace(record))
    by_seed = await explore(make_lab(config), "random", schedules=1, seed=stored["seed"])
    assert by_seed.shortest is not None and by_seed.shortest.choices == stored["choices"]


@WINDOWS
def test_safe_mode_holds_every_invariant_over_2000_random_schedules(
        redis_server: EmbeddedRedis, window: int) -> None:
    result = explore_in_processes(redis_server.url, ExploreConfig(mode="safe", window=window),
                                  Strategy.RANDOM, schedules=2000, seed=7, preemptions=0,
                                  stop_after=None, workers=2)
    assert (result.schedules, result.violating, result.bounded) == (2000, 0, 0)
    assert result.steps > 2000 * 30  # whole schedules ran, not empty ones


@WINDOWS
async def test_safe_mode_holds_every_invariant_over_bounded_exhaustive_schedules(
        make_lab: MakeLab, window: int) -> None:
    lab = make_lab(ExploreConfig(mode="safe", window=window))
    without_preemption = await explore(lab, "exhaustive", schedules=10_000, preemptions=0)
    assert without_preemption.exhausted
    assert (without_preemption.schedules, without_preemption.violating) == (96, 0)
    # The first 600 of the 6,144 schedules with one preemption (all of them: --preemptions 1).
    one_preemption = await explore(lab, "exhaustive", schedules=600, preemptions=1)
    assert not one_preemption.exhausted
    assert (one_preemption.schedules, one_preemption.violating) == (600, 0)


async def test_a_walk_of_several_windows_holds_in_safe_mode_and_breaks_in_legacy(
        make_lab: MakeLab) -> None:
    # Five endpoints in windows of two: reads of one window while the last one's batches are
    # judged, cuts, retries alone and windows read again, between the other actors' steps.
    safe = await explore(make_lab(ExploreConfig(mode="safe", endpoints=5, window=2)),
                         "random", schedules=300, seed=5)
    assert (safe.schedules, safe.violating, safe.bounded) == (300, 0, 0)
    legacy = make_lab(ExploreConfig(mode="legacy", endpoints=5, window=2, invariants=(I1,)))
    found = (await explore(legacy, "random", schedules=300, seed=5, stop_after=1)).shortest
    assert found is not None
    emptied = found.violations[0].endpoint  # in this one, two endpoints were flipped back
    assert_the_incident(trace(found.record), emptied)


async def first_violation(lab: Lab, schedules: int) -> set[Invariant]:
    result = await explore(lab, "random", schedules=schedules, seed=3, stop_after=1)
    return set() if result.shortest is None else {v.invariant for v in result.shortest.violations}


def alone(protection: Protection, window: int, *invariants: Invariant) -> ExploreConfig:
    return ExploreConfig(mode="safe", protections=(protection,), invariants=invariants,
                         window=window)


@pytest.mark.parametrize(("protection", "holds", "breaks"), [
    # The fence stops stale flips, but clean-up by age still deletes the tree the rollback
    # names when an enactor jumps from plan 1 to plan 4.
    ("fenced_commit", (I1, I2), I3),
    # Clean-up that spares named trees keeps the name answering, with the stale plan's answer.
    ("safe_cleanup", (I1, I3), I2),
])
@WINDOWS
async def test_a_single_protection_holds_only_some_invariants(
        make_lab: MakeLab, protection: Protection, holds: tuple[Invariant, ...],
        breaks: Invariant, window: int) -> None:
    assert await first_violation(make_lab(alone(protection, window, *holds)), 300) == set()
    assert await first_violation(make_lab(alone(protection, window, breaks)), 300) == {breaks}


async def test_the_same_seed_gives_the_same_trace(make_lab: MakeLab) -> None:
    lab = make_lab(ExploreConfig(mode="legacy"))
    first = await explore(lab, "random", schedules=40, seed=11)
    second = await explore(lab, "random", schedules=40, seed=11)
    assert first.shortest is not None and second.shortest is not None
    assert first.shortest.choices == second.shortest.choices
    assert trace(first.shortest.record) == trace(second.shortest.record)
    assert (first.steps, first.violating) == (second.steps, second.violating)


# -- the command line ----------------------------------------------------------------------------

def test_cli_replays_the_fixture_and_reports_a_clean_safe_run(
        redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DNSRACE_REDIS_URL", redis_server.url)
    for fixture, window in ((FIXTURE, 1), (FIXTURE_512, CLUSTER_WINDOW)):
        assert main(["--replay", str(fixture), "--json"]) == 1
        replayed = json.loads(capsys.readouterr().out)
        assert replayed["choices"] == json.loads(fixture.read_text())["choices"]
        assert replayed["config"]["window"] == window
    # One endpoint at a time is not the cluster's walk: its steps do not fit window 512.
    assert main(["--replay", str(FIXTURE), "--window", str(CLUSTER_WINDOW)]) == 2
    assert "does not fit" in capsys.readouterr().err
    assert main(["--mode", "safe", "--schedules", "30", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["schedules"], result["violating_schedules"]) == (30, 0)
    assert result["config"]["protections"] == [
        "fenced_commit", "safe_cleanup", "plan_validation", "self_repair"]
    assert result["config"]["window"] == CLUSTER_WINDOW  # the cluster's, unless told
    assert main(["--replay", "0123x"]) == 2
    assert main(["--window", "0"]) == 2



def test_worker_processes_share_a_search_without_changing_its_result(
        redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DNSRACE_REDIS_URL", redis_server.url)
    results = []
    for workers in ("1", "2"):
        assert main(["--schedules", "40", "--seed", "5", "--workers", workers, "--json"]) == 1
        results.append(json.loads(capsys.readouterr().out))
    one, two = results
    for key in ("schedules", "violating_schedules", "by_invariant", "steps"):
        assert one[key] == two[key], key
    assert one["shortest"]["choices"] == two["shortest"]["choices"]
    assert main(["--mode", "safe", "--strategy", "exhaustive", "--preemptions", "0",
                 "--workers", "2", "--json"]) == 0
    shared = json.loads(capsys.readouterr().out)
    assert (shared["schedules"], shared["exhausted"]) == (96, True)
