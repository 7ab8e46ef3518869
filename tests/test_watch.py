"""``dnsrace watch``: frames built from /metrics text (pure), and on the real cluster's race."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from services.runtime.scrape import parse
from services.tools import watch
from services.tools.watch import Probe, Snapshot
from tests.conftest import cluster_settings
from tests.observed_race import Observed, observed_race

BEFORE = {
    "planner": "dnsrace_planner_newest_generation 41\n",
    "dns": 'dnsrace_dns_generation_served{endpoint="regional"} 40\n'
           'dnsrace_dns_generation_served{endpoint="fips"} 40\n'
           'dnsrace_dns_queries_total{rcode="NOERROR",qtype="A"} 100\n'
           'dnsrace_dns_empty_answers_total{endpoint="regional"} 0\n',
    "loadgen": 'dnsrace_client_requests_total{outcome="ok"} 1000\n'
               'dnsrace_client_requests_total{outcome="dns_nodata"} 0\n',
    "enactor_az1": 'dnsrace_enactor_checked_generation{az="use1-az1"} 30\n'
                   'dnsrace_enactor_locks_total{az="use1-az1",outcome="lost"} 2\n'
                   'dnsrace_enactor_batches_rejected_total{az="use1-az1",'
                   'reason="alias_target_missing"} 10\n',
    "enactor_az2": 'dnsrace_enactor_plans_applied_total{az="use1-az2"} 5\n',
    "control": 'dnsrace_fault_active{type="enactor_stall",target="use1-az2"} 1\n'
               'dnsrace_fault_active{type="lock_delay",target="all"} 0\n',
}
AFTER = {
    **BEFORE,
    "planner": "dnsrace_planner_newest_generation 42\n",
    "dns": 'dnsrace_dns_generation_served{endpoint="regional"} 0\n'
           'dnsrace_dns_generation_served{endpoint="fips"} 0\n'
           'dnsrace_dns_queries_total{rcode="NOERROR",qtype="A"} 110\n'
           'dnsrace_dns_empty_answers_total{endpoint="regional"} 8\n',
    "loadgen": 'dnsrace_client_requests_total{outcome="ok"} 1010\n'
               'dnsrace_client_requests_total{outcome="dns_nodata"} 190\n',
    "enactor_az1": BEFORE["enactor_az1"].replace("} 10\n", "} 30\n"),
}


def snapshot(at: float, texts: dict[str, str], probe: Probe | None) -> Snapshot:
    processes = {name: parse(text) for name, text in texts.items()}
    processes["enactor_az4"] = parse("")  # not answering
    return Snapshot(at, processes, probe)


def test_frame_tells_the_outage_story() -> None:
    before = snapshot(10.0, BEFORE, Probe("ok", 6))
    after = snapshot(11.0, AFTER, Probe("dns_nodata", 0))
    frame = watch.build_frame(before, after, started=0.0)
    assert frame.failure_ratio == pytest.approx(0.95)
    assert frame.requests_per_s == pytest.approx(200.0)
    assert frame.failures_per_s == {"dns_nodata": pytest.approx(190.0)}
    assert frame.newest == 42 and frame.served == {"regional": 0, "fips": 0}
    assert frame.empty_per_s == pytest.approx(8.0)
    az1, az2, az4 = frame.enactors
    assert az1.state == "rejected: alias_target_missing" and az1.rejected_per_s == 20.0
    assert az1.rejected == {"alias_target_missing": 30.0} and az1.locks_lost == 2
    assert az2.state == "stalled (fault)" and az4.state == "down"
    assert frame.faults == [("enactor_stall", "use1-az2")]
    text = watch.render(frame)
    assert "NOERROR with no address  <== EMPTY" in text
    assert "failing 95.0%" in text and "dns_nodata 190/s" in text
    assert "regional 0 (EMPTY)" in text and "newest plan 42" in text
    assert "alias_target_missing 30 (20.0/s)" in text
    assert "faults         enactor_stall on use1-az2" in text
    assert "not answering  enactor_az4" in text


def test_first_frame_has_no_rates_yet() -> None:
    frame = watch.build_frame(None, snapshot(1.0, BEFORE, None), started=0.0)
    assert frame.failure_ratio is None and frame.requests_per_s == 0.0
    text = watch.render(frame)
    assert "failing -" in text and "not asked" in text
    assert "regional 40" in text and "(1 behind)" not in text


def parse_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    watch.add_arguments(parser)
    return parser.parse_args(argv)


def test_arguments_and_their_checks(tmp_path: Path) -> None:
    args = parse_args("--once", "--window", "0.5")
    assert watch.options_from(args) == watch.WatchOptions(window_s=0.5, once=True)
    assert watch.options_from(parse_args("--seconds", "3")).seconds == 3.0
    err = io.StringIO()
    assert watch.run(parse_args("--refresh", "0"), cluster_settings(tmp_path), err) == 2


def test_once_without_a_cluster_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    settings = cluster_settings(tmp_path, metrics_port_base=1, control_port=1, dns_port=1)
    out = io.StringIO()
    assert watch.run(parse_args("--once", "--window", "0.1"), settings, out) == 1
    assert out.getvalue() == ""
    assert "is the cluster up" in capsys.readouterr().err


def test_bounded_live_view_ends_by_itself(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path, metrics_port_base=1, control_port=1, dns_port=1)
    out = io.StringIO()
    assert watch.run(parse_args("--seconds", "0.5", "--refresh", "0.1"), settings, out) == 0
    frames = out.getvalue().count("dnsrace watch  +")
    assert 2 <= frames <= 6
    assert "not answering  control, dns, dwfm_1, dwfm_2, ec2_api, enactor_az1" in out.getvalue()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    return observed_race(tmp_path_factory)


@pytest.mark.cluster
def test_once_on_the_running_cluster_shows_the_regional_name_answering(
        observed: Observed) -> None:
    assert observed.once_rc == 0
    text = observed.once_output
    assert "dynamodb.us-east-1.amazonaws.com: " in text and " addresses" in text
    assert "not answering" not in text and "newest plan " in text
    assert "droplets held" in text and "lease work waiting" in text  # DWFM's hosts (issue 14)
    for az in ("use1-az1", "use1-az2", "use1-az4"):
        assert az in text


@pytest.mark.cluster
def test_frames_of_the_race_show_fault_empty_name_failures_and_rejections(
        observed: Observed) -> None:
    frames = observed.frames
    assert set(frames) == {"healthy", "fault", "empty", "failing", "rejecting"}
    assert "failing 0.0%" in frames["healthy"]
    assert "enactor_stall on use1-az1" in frames["fault"]
    assert "stalled (fault)" in frames["fault"]
    assert "<== EMPTY" in frames["empty"] and "regional 0 (EMPTY)" in frames["empty"]
    failing = frames["failing"].split("failing ")[1].split("%")[0]
    assert float(failing) >= 90.0 and "dns_nodata" in frames["failing"]
    assert "rejected: alias_target_missing" in frames["rejecting"]


@pytest.mark.cluster
def test_live_view_refreshes_several_times_a_second(observed: Observed) -> None:
    assert observed.live_rc == 0
    frames = observed.live_output.count("dnsrace watch  +")
    assert frames >= 3, observed.live_output
    assert "not answering" not in observed.live_output


NETWORK_BEFORE = {
    "netmgr": "dnsrace_netmgr_backlog 40\ndnsrace_netmgr_oldest_wait_seconds 2.5\n"
              "dnsrace_netmgr_propagated_total 10\n",
    "instances_az1": 'dnsrace_instances_without_connectivity{az="use1-az1"} 12\n',
    "instances_az2": 'dnsrace_instances_without_connectivity{az="use1-az2"} 0\n',
    "nlb": 'dnsrace_nlb_name_az_records 1\ndnsrace_nlb_targets_healthy{az="use1-az1"} 0\n'
           'dnsrace_nlb_targets_healthy{az="use1-az2"} 7\n'
           "dnsrace_nlb_azs_removed_in_window 2\ndnsrace_nlb_velocity_limit 1\n"
           'dnsrace_nlb_in_service_without_connectivity_total{az="use1-az1"} 12\n',
    "service_load": 'dnsrace_service_requests_total{outcome="ok"} 100\n'
                    'dnsrace_service_requests_total{outcome="dns_nodata"} 0\n',
}
NETWORK_AFTER = {
    **NETWORK_BEFORE,
    "netmgr": NETWORK_BEFORE["netmgr"].replace("propagated_total 10", "propagated_total 18"),
    "service_load": 'dnsrace_service_requests_total{outcome="ok"} 105\n'
                    'dnsrace_service_requests_total{outcome="dns_nodata"} 15\n',
}


def test_network_lines_show_backlog_capacity_removed_and_broken_invariants() -> None:
    before = snapshot(10.0, {**BEFORE, **NETWORK_BEFORE}, None)
    after = snapshot(11.0, {**AFTER, **NETWORK_AFTER, "instances_az4": ""}, None)
    frame = watch.build_frame(before, after, started=0.0)
    assert frame.network is not None and frame.network.netmgr is not None
    assert frame.network.netmgr.propagated_per_s == pytest.approx(8.0)
    assert frame.network.service is not None
    assert frame.network.service.ok_ratio == pytest.approx(0.25)
    text = watch.render(frame)
    assert "40 instances waiting for propagation (oldest 2.5 s), 8 propagated/s" in text
    assert "without connectivity: use1-az1 12  use1-az2 0  <== NO CONNECTIVITY" in text
    assert "name holds 1 of 3 AZ records  <== CAPACITY REMOVED" in text
    assert "in service: use1-az1 0  use1-az2 7" in text
    assert "removed 2 AZs in the velocity window (limit 1)  <== C3 BROKEN" in text
    assert "without connectivity 12  <== C2 BROKEN" in text
    assert "20 calls/s through the NLB's name, succeeding 25.0%" in text
    assert "not answering  enactor_az4\n" in text + "\n"  # instances_az4 is no process of the race


def test_network_lines_stay_away_while_none_of_those_processes_answers() -> None:
    quiet = {name: "" for name in ("netmgr", "nlb", "instances_az1", "service_load")}
    frame = watch.build_frame(snapshot(10.0, {**BEFORE, **quiet}, None),
                              snapshot(11.0, {**AFTER, **quiet}, None), started=0.0)
    assert frame.network is None
    text = watch.render(frame)
    assert "network state" not in text and "nlb " not in text and "service " not in text
    assert "not answering  enactor_az4" in text and "netmgr" not in text


EC2_BEFORE = {
    "dwfm_1": 'dnsrace_dwfm_leases_held{az="use1-az1"} 10\n'
              'dnsrace_dwfm_leases_held{az="use1-az2"} 5\n'
              'dnsrace_dwfm_droplets{az="use1-az1"} 50\ndnsrace_dwfm_droplets{az="use1-az2"} 50\n'
              "dnsrace_dwfm_queue_depth 300\ndnsrace_dwfm_oldest_work_age_seconds 41.5\n"
              "dnsrace_dwfm_goodput 0.2\ndnsrace_dwfm_work_expired_total 100\n",
    "dwfm_2": 'dnsrace_dwfm_leases_held{az="use1-az4"} 20\n'
              'dnsrace_dwfm_droplets{az="use1-az4"} 100\n'
              "dnsrace_dwfm_queue_depth 250\ndnsrace_dwfm_oldest_work_age_seconds 12.0\n"
              "dnsrace_dwfm_goodput 0.4\ndnsrace_dwfm_work_expired_total 40\n",
    "loadgen": BEFORE["loadgen"]
    + 'dnsrace_ec2_launches_total{outcome="ok"} 10\n'
      'dnsrace_ec2_launches_total{outcome="insufficient_capacity"} 3\n',
}
EC2_AFTER = {
    "dwfm_1": EC2_BEFORE["dwfm_1"].replace("expired_total 100", "expired_total 106"),
    "dwfm_2": EC2_BEFORE["dwfm_2"],
    "loadgen": AFTER["loadgen"] + 'dnsrace_ec2_launches_total{outcome="ok"} 10\n'
                                  'dnsrace_ec2_launches_total{outcome="insufficient_capacity"} 7\n',
}


def test_ec2_lines_show_leases_lost_work_too_late_and_launches_refused() -> None:
    frame = watch.build_frame(snapshot(10.0, {**BEFORE, **EC2_BEFORE}, None),
                              snapshot(12.0, {**AFTER, **EC2_AFTER}, None), started=0.0)
    assert frame.ec2 is not None
    text = watch.render(frame)
    assert "35 of 200 droplets held  <== LEASES LOST; goodput 0.6/s" in text
    # the oldest item on the host where it is oldest, not a sum over hosts
    assert "lease work waiting 550 (oldest 41.5 s); void 3.0/s  <== WORK DONE TOO LATE" in text
    assert "ec2 launches   insufficient_capacity 2.0/s\n" in text + "\n"


def test_ec2_lines_stay_away_without_dwfm_hosts() -> None:
    frame = watch.build_frame(snapshot(10.0, BEFORE, None), snapshot(11.0, AFTER, None),
                              started=0.0)
    assert frame.ec2 is None and "ec2 " not in watch.render(frame)
