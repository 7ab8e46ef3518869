"""The fleet's pure parts: the population's failing share and ramps, the standard retry policy,
each virtual client's choice of address."""

from __future__ import annotations

import dataclasses
import random

import pytest

from loadgen.fleet import VirtualClient
from loadgen.outcome import Outcome
from loadgen.resolver import StubResolver
from loadgen.retry import StandardRetry
from services.core.population import Population, fleet_events, outcome_of


def test_a_step_failure_has_no_ramp_and_a_gradual_one_has_its_length() -> None:
    step = Population(4)
    for c in range(4):
        step.record(c, 10.0, failed=True)
    assert step.outcome().ramp_s == 0.0
    gradual = Population(10)
    for c in range(10):  # one more client fails every 0.5 s: 1 at t=0, 9 (90 %) at t=4
        gradual.record(c, 0.5 * c, failed=True)
    out = gradual.outcome()
    assert out.peak_share == 1.0
    assert out.ramp_s == pytest.approx(4.0)


def test_recovery_ramp_runs_from_last_90_percent_to_10_percent() -> None:
    pop = Population(10)
    for c in range(10):
        pop.record(c, 1.0, failed=True)
    for c in range(9):  # one recovers each second from t=5: 10 % failing at t=13
        pop.record(c, 5.0 + c, failed=False)
    out = pop.outcome()
    # last moment at >= 90 %: t=5 (9 of 10 failing); 1 of 10 left at t=13
    assert out.recovery_ramp_s == pytest.approx(8.0)


def test_a_fleet_that_never_reaches_90_percent_has_no_ramps() -> None:
    pop = Population(10)
    for c in range(5):
        pop.record(c, c, failed=True)
    out = pop.outcome()
    assert out.peak_share == 0.5
    assert out.ramp_s is None and out.recovery_ramp_s is None


def test_the_ramp_starts_at_the_episode_that_reached_90_percent() -> None:
    # a blip at t=0..1 that cleared, then the outage from t=20
    history = [(0.0, 0.1), (1.0, 0.0), (20.0, 0.1), (22.0, 0.95), (30.0, 0.05)]
    out = outcome_of(history, 20)
    assert out.ramp_s == pytest.approx(2.0)
    assert out.recovery_ramp_s == pytest.approx(8.0)


def test_a_few_clients_failing_long_before_do_not_stretch_the_ramp() -> None:
    history = [(0.0, 0.002), (30.0, 0.05), (31.0, 0.5), (32.0, 0.95)]
    assert outcome_of(history, 1000).ramp_s == pytest.approx(2.0)


def test_a_relapse_without_recovery_leaves_the_recovery_ramp_unknown() -> None:
    history = [(0.0, 0.5), (1.0, 0.95), (2.0, 0.05), (3.0, 0.95)]
    assert outcome_of(history, 20).recovery_ramp_s is None


def test_a_client_outside_the_fleet_is_refused() -> None:
    pop = Population(3)
    with pytest.raises(ValueError, match="not one of the 3"):
        pop.record(3, 0.0, failed=True)
    with pytest.raises(ValueError, match="at least one client"):
        Population(0)


def test_standard_retry_tries_three_times_on_server_errors_only() -> None:
    retry = StandardRetry.seeded(random.Random(1))
    assert retry.should_retry(Outcome.HTTP_ERROR, 1)
    assert retry.should_retry(Outcome.CONNECT_ERROR, 2)
    assert not retry.should_retry(Outcome.HTTP_ERROR, 3)
    # an empty answer from a cache would only be read again: no retry
    assert not retry.should_retry(Outcome.DNS_NODATA, 1)
    assert not retry.should_retry(Outcome.OK, 1)


def test_standard_retry_back_off_is_full_jitter_under_a_growing_ceiling() -> None:
    retry = StandardRetry.seeded(random.Random(7))
    first = [retry.delay(1) for _ in range(200)]
    second = [retry.delay(2) for _ in range(200)]
    assert all(0 <= d <= 0.05 for d in first) and all(0 <= d <= 0.1 for d in second)
    assert max(second) > 0.05  # the ceiling doubled
    assert min(first) < 0.01  # full jitter reaches near zero
    with pytest.raises(ValueError, match="max_attempts"):
        StandardRetry(max_attempts=0)


def _client(seed: int) -> VirtualClient:
    return VirtualClient(0, StubResolver("127.0.0.1", 1), random.Random(seed))


def test_clients_spread_over_the_answers_addresses_and_keep_their_choice() -> None:
    addresses = tuple(f"127.0.1.{i}" for i in range(1, 7))
    chosen = {_client(seed).pick("n", addresses) for seed in range(100)}
    assert chosen == set(addresses)  # not everyone on the first address
    client = _client(3)
    first = client.pick("n", addresses)
    assert all(client.pick("n", addresses) == first for _ in range(20))


def test_a_retry_picks_another_address_when_there_is_one() -> None:
    client = _client(5)
    addresses = ("127.0.1.1", "127.0.1.2")
    first = client.pick("n", addresses)
    assert all(client.pick("n", addresses, avoid=first) != first for _ in range(20))
    assert client.pick("n", ("127.0.1.1",), avoid="127.0.1.1") == "127.0.1.1"


def test_dnsrace_watch_shows_the_share_of_the_fleet_failing() -> None:
    from services.tools.watch import Frame, render

    frame = Frame(elapsed_s=1.0, window_s=1.0, probe=None, rcodes_per_s={}, empty_per_s=0.0,
                  requests_per_s=200.0, failure_ratio=0.5, failures_per_s={}, newest=3,
                  served={}, enactors=[], faults=[], fleet_clients=1000, fleet_failing=250)
    assert "250 of 1000 clients failing (25.0%)" in render(frame)
    assert "client fleet" not in render(dataclasses.replace(frame, fleet_clients=0))


def test_fleet_events_are_timed_from_the_empty_answer_and_the_repair() -> None:
    history = [(1.0, 0.05), (3.0, 0.5), (5.0, 0.95), (8.0, 1.0), (11.0, 0.4), (12.5, 0.08),
               (14.0, 0.0)]
    events = fleet_events([2.0, 2.2, 9.0], history, repair_at_s=10.0)
    assert (events.empty_at_s, events.failing_90_at_s) == (2.0, 5.0)
    assert (events.repair_at_s, events.recovered_at_s) == (10.0, 12.5)
    # a share below 10 % before the repair is not a recovery from the repair
    early = fleet_events([2.0], [(5.0, 0.95), (6.0, 0.05), (7.0, 0.95), (12.0, 0.0)], 10.0)
    assert early.recovered_at_s == 12.0


def test_a_fleet_that_never_fails_or_never_recovers_has_no_such_times() -> None:
    calm = fleet_events([], [(1.0, 0.0), (2.0, 0.3)], repair_at_s=5.0)
    assert calm.empty_at_s is None and calm.failing_90_at_s is None
    assert calm.recovered_at_s is None
    stuck = fleet_events([1.0], [(2.0, 0.95), (9.0, 0.6)], repair_at_s=5.0)
    assert stuck.failing_90_at_s == 2.0 and stuck.recovered_at_s is None
    assert fleet_events([1.0], [(2.0, 1.0), (3.0, 0.0)], None).recovered_at_s is None


def test_run_json_carries_the_event_times_and_the_ttls_to_judge_them() -> None:
    from pathlib import Path

    from services.config import load
    from services.core.population import FleetEvents
    from services.tools.fleet_outcome import event_keys, outcome_json
    from services.tools.scenario import Outcome, parse

    scenario = parse('name = "x"\n[load]\nrate = 10\n')
    outcome = Outcome("legacy", events=FleetEvents(9.2194, 14.4241, 24.0, None),
                      nodata_from_cache_in_outage=3026.0)
    found = outcome_json(scenario, outcome, Path("/tmp/w")) | event_keys(
        load({}, ttl_s=5, negative_ttl_s=7))
    assert (found["empty_at_s"], found["failing_90_at_s"]) == (9.219, 14.424)
    assert (found["repair_at_s"], found["recovered_at_s"]) == (24.0, None)
    assert (found["ttl_s"], found["negative_ttl_s"]) == (5, 7)
    assert found["nodata_from_resolver_cache_in_outage"] == 3026.0
