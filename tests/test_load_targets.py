"""Which endpoint each request asks (issue 19: the regional name, and a set share the FIPS
endpoint and the account cells), and the load generator's option errors (pure, no I/O)."""

from __future__ import annotations

import collections

import pytest

from loadgen.__main__ import parse_args
from loadgen.targets import NameMix, other_endpoints
from services.config import ConfigError, Settings
from services.core.names import FIPS, REGIONAL, cell_endpoint


@pytest.mark.parametrize("share", [0.0, 0.05, 0.1, 0.25, 1 / 3, 0.5, 0.9, 1.0])
def test_exactly_the_share_asks_the_others_in_turn(share: float) -> None:
    others = other_endpoints(3)
    mix = NameMix((REGIONAL,), others, share)
    for n in (1, 7, 100, 1000, 12_345):
        counts = collections.Counter(mix.name_for(seq) for seq in range(n))
        elsewhere = n - counts[REGIONAL]
        assert elsewhere == int(n * share + 1e-9)
        # in turn: no other endpoint asked more than once more than another
        asked = [counts[name] for name in others]
        assert max(asked) - min(asked) <= 1, counts


def test_the_others_are_the_fips_endpoint_and_every_cell() -> None:
    assert other_endpoints(2) == (FIPS, cell_endpoint(0), cell_endpoint(1))
    assert other_endpoints(0) == (FIPS,)
    assert NameMix((REGIONAL,), other_endpoints(2), 0.0).all_names == (REGIONAL,)
    assert NameMix((REGIONAL,), other_endpoints(2), 0.2).all_names == (
        REGIONAL, FIPS, cell_endpoint(0), cell_endpoint(1))


def test_without_a_share_the_names_given_are_asked_in_turn() -> None:
    mix = NameMix(("a.example", "b.example"))
    assert [mix.name_for(seq) for seq in range(4)] == ["a.example", "b.example"] * 2


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="from 0 to 1"):
        NameMix((REGIONAL,), other_endpoints(1), share)
    with pytest.raises(ConfigError, match="DNSRACE_LOAD_OTHER_SHARE must be from 0 to 1"):
        Settings(load_other_share=share)


@pytest.mark.parametrize(("argv", "said"), [
    (["--rate", "-1"], "--rate must be >= 0, got -1"),
    (["--duration", "-2"], "--duration must be >= 0"),
    (["--max-in-flight", "0"], "--max-in-flight must be >= 1"),
    (["--clients", "-3"], "--clients must be between 0 and 100000"),
    (["--other-share", "2"], "--other-share must be from 0 to 1, got 2"),
    (["--name", "bad..name"], "--name: 'bad..name' is not a usable DNS name"),
])
def test_python_m_loadgen_says_what_is_wrong_and_starts_nothing(
        argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_python_m_loadgen_takes_the_share() -> None:
    assert parse_args(["--other-share", "0.25"]).other_share == 0.25
    assert parse_args([]).other_share is None  # the setting's, DNSRACE_LOAD_OTHER_SHARE
