"""When the demo, soak and scenarios call traffic healthy and start the race (pure: samples in)."""

from __future__ import annotations

from services.config import Settings
from services.report.monitor import DnsSample, LoadSample, Monitor


def _monitor(*load: LoadSample) -> Monitor:
    monitor = Monitor(Settings())
    monitor.dns.append(DnsSample(0.0, "ok", 6))
    monitor.load.extend(load)
    return monitor


def test_healthy_when_the_name_answers_and_no_request_failed_in_the_last_second() -> None:
    assert _monitor(LoadSample(0.0, {"ok": 10}, {}, 3, 3),
                    LoadSample(1.0, {"ok": 160}, {}, 3, 3)).healthy()
    assert not _monitor(LoadSample(0.0, {"ok": 10}, {}, 3, 3),
                        LoadSample(1.0, {"ok": 159, "dns_nxdomain": 1}, {}, 3, 3)).healthy()


def test_not_healthy_while_a_client_may_still_hold_a_failed_start_up_answer() -> None:
    # a client holding a negatively cached NXDOMAIN from start-up sent nothing this second:
    # every request in the window succeeded, yet that client's next request will fail
    still = [LoadSample(0.0, {"ok": 10, "dns_nxdomain": 3}, {}, 3, 3, fleet_clients=200,
                        fleet_failing=3)]
    still += [LoadSample(t, {"ok": 10 + 150 * t, "dns_nxdomain": 4}, {}, 3, 3,
                         fleet_clients=200, fleet_failing=1) for t in (1.0, 2.0, 3.0)]
    assert not _monitor(*still).healthy()
    # the negative TTL (5 s) passed with no failure: every such entry has expired, although
    # the client's last request (long ago, at a low rate per client) still counts as failing
    later = [LoadSample(t, {"ok": 10 + 150 * t, "dns_nxdomain": 4}, {}, 3, 3,
                        fleet_clients=200, fleet_failing=1) for t in (4.0, 5.0, 6.0)]
    assert _monitor(*still, *later).healthy()
    # or sooner, once no client's last request failed
    cleared = LoadSample(3.5, {"ok": 535, "dns_nxdomain": 4}, {}, 3, 3, fleet_clients=200,
                         fleet_failing=0)
    assert _monitor(*still, cleared).healthy()


def test_not_healthy_before_the_name_answers() -> None:
    monitor = _monitor(LoadSample(0.0, {"ok": 10}, {}, 3, 3),
                       LoadSample(1.0, {"ok": 160}, {}, 3, 3))
    monitor.dns.append(DnsSample(1.0, "dns_nodata", 0))
    assert not monitor.healthy()
