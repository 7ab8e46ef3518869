"""bench.zone_cpu's pure parts: the shared names check, the large/small comparison, the order
of the sides and the UDP batch counters."""

from __future__ import annotations

import pytest

from bench.common import BenchError
from bench.dnsperf import DnsperfResult
from bench.zone_cpu import Measured, check_shared, compare, counters, mean_batch, order


def result(cpu_us: float | None, qps: float = 100_000.0, load: float = 0.5,
           batch: float | None = 8.0) -> Measured:
    return Measured(DnsperfResult(
        server="ours", mode="max", sent=1000, completed=1000, lost=0, qps=qps,
        avg_latency_ms=0.1, max_latency_ms=1.0, response_bytes=151, run_time_s=5.0,
        rcodes="NOERROR 1000", cpu_per_query_us=cpu_us, loadavg_1m=load), batch)


def test_names_of_the_small_zone_with_the_same_addresses_in_the_large_pass() -> None:
    small = {"a": ["127.0.10.1", "127.0.10.2"], "b": ["127.0.10.3"]}
    large = {"a": ["127.0.10.2", "127.0.10.1"], "b": ["127.0.10.3"], "c": ["127.0.10.4"]}
    check_shared(small, large)


def test_a_name_missing_from_the_large_zone_or_answered_otherwise_is_an_error() -> None:
    with pytest.raises(BenchError, match=r"1 missing .*'b'.*0 with other"):
        check_shared({"a": ["127.0.10.1"], "b": ["127.0.10.3"]}, {"a": ["127.0.10.1"]})
    with pytest.raises(BenchError, match=r"0 missing .*1 with other addresses .*'a'"):
        check_shared({"a": ["127.0.10.1"]}, {"a": ["127.0.10.2"]})


def test_compare_gives_the_ratio_of_each_round_and_of_the_medians() -> None:
    large = [result(8.0, load=1.0, batch=12.5), result(9.0), result(12.0, batch=None)]
    small = [result(8.0, load=1.1), result(7.5), result(10.0)]
    c = compare(large, small)
    assert c["rounds"] == 3
    assert c["large_cpu_per_query_us_runs"] == [8.0, 9.0, 12.0]
    assert c["ratio_runs"] == [1.0, 1.2, 1.2]
    assert c["large_cpu_per_query_us_median"] == 9.0
    assert c["small_cpu_per_query_us_median"] == 8.0
    assert c["ratio_of_medians"] == 1.125
    assert c["ratio_median"] == 1.2
    assert c["loadavg_1m_runs"] == [[1.0, 1.1], [0.5, 0.5], [0.5, 0.5]]
    assert c["large_mean_udp_batch_runs"] == [12.5, 8.0, None]
    assert c["lost_total"] == 0


def test_a_round_without_a_cpu_figure_has_no_ratio_and_is_left_out_of_the_medians() -> None:
    c = compare([result(None), result(9.0)], [result(8.0), result(6.0)])
    assert c["ratio_runs"] == [None, 1.5]
    assert c["large_cpu_per_query_us_median"] == 9.0
    assert c["ratio_median"] == 1.5


def test_compare_needs_one_run_of_each_side_per_round() -> None:
    with pytest.raises(ValueError, match="one of each a round"):
        compare([result(8.0)], [result(8.0), result(7.0)])
    with pytest.raises(ValueError):
        compare([], [])


def test_the_sides_take_turns_at_going_first() -> None:
    assert [order(n) for n in range(3)] == [("large", "small"), ("small", "large"),
                                            ("large", "small")]


METRICS = """# HELP dnsrace_dns_udp_batches_total Receive calls that returned UDP queries
# TYPE dnsrace_dns_udp_batches_total counter
dnsrace_dns_udp_batches_total 1000.0
dnsrace_dns_udp_batched_datagrams_total 12000.0
dnsrace_dns_queries_total{qtype="A",rcode="NOERROR"} 5.0
"""


def test_the_mean_udp_batch_is_datagrams_per_receive_call_between_two_readings() -> None:
    before = counters(METRICS)
    assert before == {"dnsrace_dns_udp_batches_total": 1000.0,
                      "dnsrace_dns_udp_batched_datagrams_total": 12000.0}
    after = counters(METRICS.replace("1000.0", "1400.0").replace("12000.0", "16000.0"))
    assert mean_batch(before, after) == 10.0
    assert mean_batch(before, before) is None  # no receive call in between
    assert mean_batch({}, after) is None  # a server without the counters
