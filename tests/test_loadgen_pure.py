"""Load generator decisions without I/O: schedule, percentiles, DNS answer meaning and TTLs."""

from __future__ import annotations

import json
import math

import pytest
from dnslib import CNAME, QTYPE, RCODE, RR, SOA, A, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from loadgen.answers import interpret, negative_cache_ttl
from loadgen.client import request_for
from loadgen.outcome import Outcome
from loadgen.schedule import arrival_time, cumulative_arrivals, rate_at, scheduled_count
from loadgen.stats import LatencyHistogram, LatencySummary, LoadSummary, nearest_rank

NAME = "dynamodb.us-east-1.amazonaws.com"
ZONE = "us-east-1.amazonaws.com"


# --- schedule -------------------------------------------------------------------------------

def test_constant_rate_sends_exactly_rate_times_duration() -> None:
    assert scheduled_count(2.0, 100, 0) == 200
    assert [arrival_time(k, 100, 0) for k in range(3)] == [0.0, 0.01, 0.02]
    assert scheduled_count(1.0, 2000, 0) == 2000


def test_ramp_climbs_linearly_then_holds() -> None:
    assert rate_at(0.0, 200, 2) == 0
    assert rate_at(0.5, 200, 2) == 50
    assert rate_at(2.0, 200, 2) == 200
    assert rate_at(10.0, 200, 2) == 200
    # half the peak rate on average during the ramp, then the full rate
    assert scheduled_count(2.0, 200, 2) == 200
    assert scheduled_count(5.0, 200, 2) == 200 + 600


@given(rate=st.floats(0.5, 5000), ramp=st.floats(0, 30), k=st.integers(0, 200_000))
def test_arrival_times_invert_the_cumulative_schedule(rate: float, ramp: float, k: int) -> None:
    t = arrival_time(k, rate, ramp)
    assert cumulative_arrivals(t, rate, ramp) == pytest.approx(k, abs=1e-6 * max(1, k))
    assert arrival_time(k + 1, rate, ramp) > t
    assert scheduled_count(t + 1e-7, rate, ramp) >= k + 1


def test_zero_rate_never_sends() -> None:
    assert math.isinf(arrival_time(0, 0, 0))
    assert scheduled_count(100, 0, 5) == 0


# --- percentiles ----------------------------------------------------------------------------

def test_nearest_rank() -> None:
    assert nearest_rank(100, 50) == 50
    assert nearest_rank(100, 99) == 99
    assert nearest_rank(1, 1) == 1
    assert nearest_rank(3, 100) == 3
    with pytest.raises(ValueError):
        nearest_rank(0, 50)


@given(st.lists(st.floats(1e-7, 100.0), min_size=1, max_size=300),
       st.sampled_from([1, 50, 90, 99, 99.9, 100]))
def test_histogram_percentiles_are_within_one_percent_above_exact(values: list[float],
                                                                  q: float) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    exact = sorted(values)[nearest_rank(len(values), q) - 1]
    got = histogram.percentile(q)
    assert exact * (1 - 1e-9) <= got <= max(exact * 1.01, 1e-6) * (1 + 1e-9)
    assert histogram.summary().max_ms == round(max(values) * 1000, 3)


def test_latency_summary_of_nothing_is_empty() -> None:
    assert LatencyHistogram().summary() == LatencySummary(0, None, None, None, None)


# --- DNS answers and caching decisions ------------------------------------------------------

def reply(rcode: int = RCODE.NOERROR) -> DNSRecord:
    response = DNSRecord.question(NAME, "A").reply()
    response.header.rcode = rcode
    return response


def soa(ttl: int, minimum: int) -> RR:
    return RR(ZONE, QTYPE.SOA, ttl=ttl,
              rdata=SOA("ns1." + ZONE, "hostmaster." + ZONE, (1, 60, 30, 600, minimum)))


@pytest.mark.parametrize(("soa_ttl", "minimum", "expected"), [
    (30, 5, 5), (5, 300, 5), (60, 60, 60), (None, 60, None), (0, 60, None),
])
def test_negative_ttl_is_the_smaller_of_soa_ttl_and_minimum(
        soa_ttl: int | None, minimum: int, expected: int | None) -> None:
    assert negative_cache_ttl(soa_ttl, minimum) == expected


def test_addresses_are_cached_for_their_smallest_ttl() -> None:
    response = reply()
    response.add_answer(RR(NAME, QTYPE.A, rdata=A("127.0.10.1"), ttl=5),
                        RR(NAME, QTYPE.A, rdata=A("127.0.10.2"), ttl=3),
                        RR("other." + ZONE, QTYPE.A, rdata=A("127.0.10.9"), ttl=1))
    answer = interpret(response, NAME)
    assert answer.outcome is Outcome.OK
    assert answer.addresses == ("127.0.10.1", "127.0.10.2")
    assert answer.cache_ttl_s == 3


def test_cname_chains_in_the_answer_are_followed() -> None:
    response = reply()
    response.add_answer(RR(NAME, QTYPE.CNAME, rdata=CNAME("plan-7." + NAME), ttl=2),
                        RR("plan-7." + NAME, QTYPE.A, rdata=A("127.0.10.4"), ttl=60))
    answer = interpret(response, NAME.upper())
    assert (answer.outcome, answer.addresses, answer.cache_ttl_s) == (
        Outcome.OK, ("127.0.10.4",), 2)


def test_noerror_without_addresses_is_nodata_cached_by_the_soa() -> None:
    response = reply()
    response.add_auth(soa(ttl=30, minimum=5))
    answer = interpret(response, NAME)
    assert (answer.outcome, answer.addresses, answer.cache_ttl_s) == (Outcome.DNS_NODATA, (), 5)


def test_nxdomain_without_soa_is_not_cached() -> None:
    answer = interpret(reply(RCODE.NXDOMAIN), NAME)
    assert (answer.outcome, answer.cache_ttl_s) == (Outcome.DNS_NXDOMAIN, None)
    response = reply(RCODE.NXDOMAIN)
    response.add_auth(soa(ttl=10, minimum=10))
    assert interpret(response, NAME).cache_ttl_s == 10


@pytest.mark.parametrize("rcode", [RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR, RCODE.NOTIMP])
def test_error_rcodes_are_servfail_and_never_cached(rcode: int) -> None:
    response = reply(rcode)
    response.add_auth(soa(ttl=30, minimum=30))
    answer = interpret(response, NAME)
    assert (answer.outcome, answer.cache_ttl_s) == (Outcome.DNS_SERVFAIL, None)


# --- requests and the summary ---------------------------------------------------------------

def test_mixed_operation_alternates_put_and_get_of_the_same_key() -> None:
    put_op, put_body = request_for(6, "mixed", "dnsrace")
    get_op, get_body = request_for(7, "mixed", "dnsrace")
    assert (put_op, get_op) == ("PutItem", "GetItem")
    assert json.loads(put_body)["Item"]["pk"] == json.loads(get_body)["Key"]["pk"]
    assert request_for(6, "get", "dnsrace")[0] == "GetItem"


def test_summary_reports_rates_outcomes_and_latency() -> None:
    summary = LoadSummary(
        names=(NAME,), operation="get", peak_rate_per_s=100, duration_s=2.0, scheduled=200,
        sent=190, dropped=10, late=3,
        outcomes={str(o): 0 for o in Outcome} | {"ok": 150, "dns_nodata": 40},
        latency=LatencySummary(190, 1.0, 2.0, 3.0, 4.0),
        latency_ok=LatencySummary(150, 1.0, 2.0, 3.0, 4.0),
    )
    assert summary.target_rate_per_s == 100
    assert summary.achieved_rate_per_s == 95
    data = json.loads(summary.to_json())
    assert data["outcomes"]["dns_nodata"] == 40
    assert data["achieved_rate_per_s"] == 95
    assert data["latency"]["p99_ms"] == 3.0
    assert data["completed"] == 190
    text = summary.to_text()
    assert "achieved 95.0/s of target 100.0/s" in text
    assert "dropped 10  late 3" in text
    assert "dns_nodata" in text and "21.1 %" in text
