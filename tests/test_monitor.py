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


def test_not_healthy_while_a_client_of_the_fleet_is_still_failing() -> None:
    # a client holding a negatively cached NXDOMAIN from start-up sent nothing this second:
    # every request in the window succeeded, yet that client's next request will fail
    still = (LoadSample(0.0, {"ok": 10, "dns_nxdomain": 3}, {}, 3, 3),
             LoadSample(1.0, {"ok": 160, "dns_nxdomain": 3}, {}, 3, 3, fleet_clients=200,
                        fleet_failing=1))
    assert not _monitor(*still).healthy()
    cleared = (*still, LoadSample(2.0, {"ok": 310, "dns_nxdomain": 3}, {}, 3, 3,
                                  fleet_clients=200, fleet_failing=0))
    assert _monitor(*cleared).healthy()


def test_not_healthy_before_the_name_answers() -> None:
    monitor = _monitor(LoadSample(0.0, {"ok": 10}, {}, 3, 3),
                       LoadSample(1.0, {"ok": 160}, {}, 3, 3))
    monitor.dns.append(DnsSample(1.0, "dns_nodata", 0))
    assert not monitor.healthy()
