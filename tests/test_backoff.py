"""The retry policy, pure: how long each retry waits, its bounds, its jitter, its seed."""

from __future__ import annotations

import random

import pytest

from services.core.backoff import RetryBackoff


def test_without_jitter_the_delay_doubles_from_base_up_to_the_cap() -> None:
    policy = RetryBackoff(base_s=0.05, cap_s=1.0, jitter=0)
    assert [policy.delay(n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_the_factor_sets_the_growth() -> None:
    policy = RetryBackoff(base_s=0.01, cap_s=10.0, factor=3.0, jitter=0)
    assert [round(policy.delay(n), 6) for n in range(1, 5)] == [0.01, 0.03, 0.09, 0.27]
    assert RetryBackoff(base_s=0.2, cap_s=5.0, factor=1.0, jitter=0).delay(50) == 0.2


def test_a_retry_loop_that_ran_for_ever_still_waits_the_cap_not_an_overflow() -> None:
    policy = RetryBackoff(base_s=0.02, cap_s=1.0, jitter=0)
    assert policy.delay(10_000) == 1.0
    assert policy.delay(2**62) == 1.0


def test_full_jitter_stays_between_zero_and_the_ceiling() -> None:
    policy = RetryBackoff(base_s=0.1, cap_s=2.0, rng=random.Random(7))
    for attempt in range(1, 12):
        ceiling = policy.ceiling(attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 2  # spread over the range, not one value


def test_equal_jitter_keeps_at_least_half_the_ceiling() -> None:
    policy = RetryBackoff(base_s=0.1, cap_s=2.0, jitter=0.5, rng=random.Random(3))
    delays = [policy.delay(4) for _ in range(500)]
    assert all(0.4 <= d <= 0.8 for d in delays)


def test_equal_jitter_is_the_enactors_lock_backoff_draw_for_draw() -> None:
    """services/enactor/enactor.py computes min(max, base * 2 ** attempt) * (0.5 + r / 2)
    for its 0-based attempt: the policy with jitter 0.5 gives the same delays."""
    policy = RetryBackoff(base_s=0.05, cap_s=1.0, jitter=0.5, rng=random.Random(9))
    rng = random.Random(9)
    for attempt in range(8):
        by_hand = min(1.0, 0.05 * 2 ** attempt) * (0.5 + rng.random() / 2)
        assert policy.delay(attempt + 1) == pytest.approx(by_hand, rel=1e-12)


def test_a_seeded_policy_gives_the_same_delays_every_time() -> None:
    first = RetryBackoff(rng=random.Random(42))
    second = RetryBackoff(rng=random.Random(42))
    assert [first.delay(n) for n in range(1, 20)] == [second.delay(n) for n in range(1, 20)]
    other = RetryBackoff(rng=random.Random(43))
    assert [first.delay(n) for n in range(1, 20)] != [other.delay(n) for n in range(1, 20)]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"base_s": -0.1}, "0 <= base_s <= cap_s"),
    ({"base_s": 2.0, "cap_s": 1.0}, "0 <= base_s <= cap_s"),
    ({"factor": 0.5}, "factor must be >= 1"),
    ({"jitter": 1.5}, r"jitter must be in \[0, 1\]"),
    ({"cap_s": float("inf")}, "cap_s must be a finite number"),
    ({"base_s": True}, "base_s must be a finite number"),
])
def test_bad_parameters_are_refused_with_what_is_wrong(kwargs: dict[str, float],
                                                       message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryBackoff(**kwargs)


@pytest.mark.parametrize("attempt", [0, -3, 1.5, True])
def test_attempts_count_from_one(attempt: object) -> None:
    with pytest.raises(ValueError, match="attempt counts retries from 1"):
        RetryBackoff().delay(attempt)  # type: ignore[arg-type]
