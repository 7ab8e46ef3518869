"""The HTML report: pure layout and read-outs, then a real race rendered in a real browser.

The browser tests run the demo's legacy and safe phases on a cluster of their own (once for
the module), write the report from what they recorded, and ask headless Chromium what it drew.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import struct
from pathlib import Path

import pytest

from services.core import checker, events, names
from services.report.model import (
    LatencySample,
    RunRecord,
    empty_runs,
    fault_windows,
    healthy_from,
    rounds,
    stalls,
)
from services.report.monitor import DnsSample, LoadSample
from services.report.render import close_up_window, render, write_report
from services.report.scale import (
    LinearScale,
    LogScale,
    counter_deltas,
    fits,
    histogram_quantile,
    intervals,
    nice_ticks,
    pack,
    stagger,
    step_path,
)
from services.report.story import MomentKind, figures, story
from services.tools.capture import dump_dom, record_demo, screenshot
from tests.conftest import cluster_settings, require_tool

T0 = 1_800_000_000.0  # the monitor's zero, in epoch seconds
A, B = "enactor/use1-az1", "enactor/use1-az2"
CELL = names.cell_endpoint(0)


# ---- pure: scales and layout ---------------------------------------------------------------


def test_linear_scale_maps_clamps_and_measures() -> None:
    x = LinearScale((10.0, 20.0), (100.0, 300.0))
    assert (x(10), x(15), x(20)) == (100, 200, 300)
    assert (x(0), x(99)) == (100, 300)  # outside the domain: clamped to the plot
    assert x.length(0.5) == 10.0  # durations are not clamped
    assert x.span(12, 12) == (140.0, 1.0)  # an instant is still a visible pixel
    assert LinearScale((5.0, 5.0), (0.0, 10.0))(7) == 5.0


def test_nice_ticks_are_round_and_inside() -> None:
    assert nice_ticks(0, 47, 8) == [0, 10, 20, 30, 40]  # at most about ``count`` ticks
    assert nice_ticks(0, 47, 12) == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert nice_ticks(26.0, 30.5, 12) == [26, 26.5, 27, 27.5, 28, 28.5, 29, 29.5, 30, 30.5]
    assert nice_ticks(-1.3, 0.2, 4) == [-1, -0.5, 0]
    assert nice_ticks(3, 3) == [3]


def test_step_path_holds_each_value_until_the_next() -> None:
    x = LinearScale((0.0, 10.0), (0.0, 100.0))
    y = LinearScale((0.0, 10.0), (100.0, 0.0))
    assert step_path([(0, 5), (2, 5), (4, 8)], x, y, end=10) == (
        "M0.0,50.0H20.0H40.0V20.0H100.0")
    assert step_path([], x, y) == ""


def test_stagger_puts_close_labels_on_other_rows() -> None:
    assert stagger([0, 5, 30, 31], 22) == [0, 1, 0, 1]
    assert stagger([31, 0, 5, 30], 22) == [1, 0, 1, 0]  # input order does not matter
    assert stagger([], 10) == []


def test_pack_keeps_overlapping_intervals_apart() -> None:
    assert pack([(0, 10), (5, 15), (11, 20), (16, 30)]) == [0, 1, 0, 1]
    assert pack([(0, 10), (10, 20)], gap=2) == [0, 1]


def test_histogram_quantile_as_prometheus() -> None:
    buckets = {0.1: 50.0, 0.5: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.5, {0.1: 0.0, 1.0: 0.0, math.inf: 10.0}) == 1.0
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert histogram_quantile(0.5, {}) is None


def test_counters_intervals_and_restarts() -> None:
    assert counter_deltas({"ok": 10}, {"ok": 15, "dns_nodata": 2}) == {"ok": 5, "dns_nodata": 2}
    assert counter_deltas({"ok": 10}, {"ok": 3}) == {"ok": 3}  # the process restarted
    points = [(0.0, {"ok": 0.0}), (0.5, {"ok": 50.0}), (1.0, {"ok": 100.0}),
              (2.1, {"ok": 200.0})]
    found = intervals(points, min_width=1.0)
    assert [(i.start, i.end, i.counts) for i in found] == [
        (0.0, 1.0, {"ok": 100.0}), (1.0, 2.1, {"ok": 100.0})]
    assert found[0].rate("ok") == 100.0


def test_log_scale_and_fitting_text() -> None:
    y = LogScale((0.001, 1.0), (100.0, 0.0))
    assert y(0.001) == 100 and y(1.0) == 0 and y(0.01) == pytest.approx(100 * 2 / 3)
    assert y.ticks() == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert fits("27", 20, 10) and not fits("plan 27 stalled", 20, 10)


# ---- pure: what the report reads out of a hand-made legacy race ---------------------------


def ms(t: float) -> int:
    return int((T0 + t) * 1000)


def legacy_events() -> list[events.Event]:
    r = names.REGIONAL
    return [
        events.PlanPublished(at_ms=ms(0.5), source="planner", generation=7),
        events.FaultStarted(at_ms=ms(0.9), source="control", fault_id="f1",
                             type="enactor_stall", target="use1-az1", expires_ms=ms(120),
                             params={"point": "after_check"}),
        events.CheckPassed(at_ms=ms(1.0), source=A, generation=7, applied=6),
        events.Stalled(at_ms=ms(1.01), source=A, point="after_check", endpoint="",
                        generation=7, fault_id="f1"),
        events.CheckPassed(at_ms=ms(2.0), source=B, generation=13, applied=12),
        events.BatchCommitted(at_ms=ms(2.1), source=B, endpoint=r, generation=13,
                               previous=12, rollback=12, serial=50),
        events.RoundCompleted(at_ms=ms(2.5), source=B, generation=13, committed=1,
                               rejected=0, deleted=0),
        events.FaultEnded(at_ms=ms(3.0), source="control", fault_id="f1",
                           type="enactor_stall", target="use1-az1", why="removed"),
        events.Resumed(at_ms=ms(3.0), source=A, point="after_check", endpoint="",
                        generation=7, fault_id="f1"),
        events.BatchCommitted(at_ms=ms(3.1), source=A, endpoint=r, generation=7,
                               previous=13, rollback=13, serial=51),
        events.DnsAnswer(at_ms=ms(3.2), source="dns", endpoint=r, generation=7, addresses=6),
        events.RoundCompleted(at_ms=ms(3.3), source=A, generation=7, committed=1,
                               rejected=0, deleted=0),
        events.TreeDeleted(at_ms=ms(4.0), source=B, tree=names.tree_name(7, r), endpoint=r,
                            generation=7, live=True, serial=52),
        events.DnsAnswer(at_ms=ms(4.1), source="dns", endpoint=r, generation=7, addresses=0),
        events.CheckPassed(at_ms=ms(5.0), source=B, generation=14, applied=7),
        events.BatchRejected(at_ms=ms(5.1), source=B, endpoint=r, generation=14,
                              reason="alias_target_missing", detail="rollback target gone"),
    ]


def polled(empty_from: float | None, empty_to: float | None, end: float = 9.0
           ) -> list[DnsSample]:
    out = []
    t = 0.0
    while t < end:
        empty = empty_from is not None and empty_to is not None and empty_from <= t < empty_to
        out.append(DnsSample(t, "dns_nodata" if empty else "ok", 0 if empty else 6))
        t = round(t + 0.2, 3)
    return out


def load_series(fail_from: float, fail_to: float, end: float = 9.0) -> list[LoadSample]:
    out, ok, failed = [], 0.0, 0.0
    for i in range(int(end * 2) + 1):
        t = i / 2
        if fail_from <= t < fail_to:
            failed += 50
        else:
            ok += 50
        out.append(LoadSample(t, {"ok": ok, "dns_nodata": failed}, {}, 7, 14))
    return out


def legacy_record() -> RunRecord:
    return RunRecord("legacy", "legacy", legacy_events(), polled(4.2, 7.0),
                     load_series(4.5, 7.5), T0,
                     latency=[LatencySample(t / 2, {"0.01": 10.0 * t, "0.1": 20.0 * t,
                                                    "+Inf": 20.0 * t}) for t in range(18)])


def safe_record() -> RunRecord:
    recorded = [e for e in legacy_events()
              if not isinstance(e, events.TreeDeleted | events.BatchRejected)
              and not (isinstance(e, events.BatchCommitted) and e.generation < e.previous)
              and not (isinstance(e, events.DnsAnswer) and e.addresses == 0)]
    return RunRecord("safe", "safe", recorded, polled(None, None), load_series(99, 99), T0)


def test_story_of_a_legacy_race_is_in_the_2025_order() -> None:
    kinds = [(m.kind, round(m.at, 2)) for m in story(legacy_record())]
    assert kinds == [(MomentKind.STALE_CHECK, 1.0), (MomentKind.STALE_FLIP, 3.1),
                     (MomentKind.LIVE_DELETED, 4.0), (MomentKind.FIRST_EMPTY, 4.2),
                     (MomentKind.ANSWERS_AGAIN, 7.0)]
    assert story(safe_record()) == []
    assert close_up_window(story(legacy_record())) == pytest.approx((2.1, 6.2))
    assert close_up_window([]) is None


def test_figures_from_the_record() -> None:
    f = figures(legacy_record())
    assert f.outage and f.empty_answers == 14 and not f.still_empty
    assert f.time_to_empty_s == pytest.approx(0.2)
    assert f.outage_s == pytest.approx(2.8)
    assert (f.stale_flips, f.live_deletions) == (1, 1)
    assert f.rejected_batches == {"alias_target_missing": 1}
    assert f.violations["I1"] >= 1 and f.violations["I2"] == 1 and f.violations["I3"] == 1
    assert f.requests == 900 and f.failed_requests == 300
    assert f.peak_failure_ratio == 1.0
    assert f.recovery_s is not None and f.recovery_s <= 1.5
    s = figures(safe_record())
    assert not s.outage and s.failed_requests == 0 and s.stale_flips == s.live_deletions == 0
    assert not any(s.violations.values())


def test_rounds_stalls_faults_and_empty_stretches() -> None:
    record = legacy_record()
    slow = rounds(record, A)
    assert [(r.generation, r.stale_flips, r.completed) for r in slow] == [(7, 1, True)]
    assert (round(slow[0].start, 2), round(slow[0].end, 2)) == (1.0, 3.3)
    assert [r.completed for r in rounds(record, B)] == [True, False]  # 14 never finished
    assert [(round(s.start, 2), round(s.end, 2), s.label) for s in stalls(record, A)] == [
        (1.01, 3.0, "after_check")]
    [fault] = fault_windows(record)
    assert (round(fault.start, 2), round(fault.end, 2), fault.open) == (0.9, 3.0, False)
    runs = empty_runs(record.dns, 0.2)
    assert [(s.start, s.end, s.open) for s in runs] == [(4.2, 7.0, False)]
    assert empty_runs(polled(8.0, 99.0), 0.2)[-1].open
    assert healthy_from(load_series(0, 1.5)) == 2  # counting starts at +1.0 s, all ok after


def test_rendered_page_is_self_contained_and_marks_the_race() -> None:
    page = render("demo", [legacy_record(), safe_record()])
    assert "<script src" not in page and "<link" not in page and "<img" not in page
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}  # a namespace name, never fetched
    legacy, safe = page.split('<section id="run-1"', 1)
    assert 'class="mark stale-flip"' in legacy and 'class="mark live-deleted"' in legacy
    assert 'class="mark answer empty"' in legacy and "close-up" in legacy
    for mark in ("stale-flip", "live-deleted", "answer empty", "badge", "served-empty"):
        assert f'class="mark {mark}' not in safe
    assert "None of the race" in safe
    assert 'data-chart="latency"' in legacy  # the hand-made record carries a histogram
    assert "no violation of I1, I2 or I3" in safe


def test_matrix_rows_carry_the_scenario_outcome() -> None:
    from services.tools.scenario import Outcome

    legacy = legacy_record().named("none (legacy)")
    legacy.result = Outcome("legacy", stale_answers=3, converged_after_s=None)
    safe = safe_record().named("all (safe)")
    safe.result = Outcome("safe", stale_answers=0, converged_after_s=0.4)
    assert (figures(legacy).converged, figures(safe).converged) == (False, True)
    page = render("matrix", [legacy, safe])
    assert "converged (I4)" in page and "stale answers seen" in page
    assert 'data-run="none (legacy)"' in page and 'data-run="all (safe)"' in page


def test_write_report_names_a_new_file_each_time(tmp_path: Path) -> None:
    first = write_report("run", [legacy_record()], tmp_path / "reports")
    second = write_report("run", [legacy_record()], tmp_path / "reports")
    assert first != second and first.exists() and second.exists()
    assert first.parent == (tmp_path / "reports").resolve() and first.suffix == ".html"
    assert write_report("matrix", [], tmp_path).read_text().count("No run was recorded") == 1


# ---- a real race, recorded, rendered in a real browser ------------------------------------


@pytest.fixture(scope="module")
def demo_records(tmp_path_factory: pytest.TempPathFactory) -> list[RunRecord]:
    """The demo's legacy and safe phases on a cluster of their own (about 50 s)."""
    root = tmp_path_factory.mktemp("report-demo")
    records = asyncio.run(record_demo(cluster_settings(root), root, rate=150.0))
    assert [r.mode for r in records] == ["legacy", "safe"], "a demo phase did not run"
    return records


def _sections(dom: str) -> dict[str, str]:
    return dict(re.findall(r'<section[^>]*data-run="([^"]*)"[^>]*>(.*?)</section>', dom,
                           re.S))


def _tags(chunk: str, cls: str) -> list[dict[str, str]]:
    out = []
    for attrs in re.findall(r"<\w+\s([^>]*)>", chunk):
        found = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        if cls in found.get("class", "").split():
            out.append(found)
    return out


@pytest.mark.cluster
def test_real_race_in_the_report_from_its_history(demo_records: list[RunRecord]) -> None:
    legacy, safe = demo_records
    f = figures(legacy)
    assert f.outage and f.stale_flips > 0 and f.live_deletions > 0
    assert f.time_to_empty_s is not None and f.time_to_empty_s < 2.0
    assert f.failed_requests > 0 and f.peak_failure_ratio >= 0.9
    assert {v.invariant for v in checker.check(legacy.events)} >= {
        checker.Invariant.I1, checker.Invariant.I3}
    kinds = [m.kind for m in story(legacy)]
    order = [MomentKind.STALE_FLIP, MomentKind.LIVE_DELETED, MomentKind.FIRST_EMPTY]
    assert [k for k in kinds if k in order] == order
    assert legacy.latency, "the clients' latency histogram was scraped"
    s = figures(safe)
    assert not s.outage and s.stale_flips == s.live_deletions == s.failed_requests == 0
    assert story(safe) == []


@pytest.mark.cluster
def test_browser_draws_the_legacy_race_in_order_and_nothing_for_safe(
        demo_records: list[RunRecord], tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    path = write_report("demo", demo_records, tmp_path)
    dom = dump_dom(path, chromium)
    assert 'data-drawn="yes"' in dom, "the page's script did not run to its end"
    charts = _tags(dom, "chart")
    assert len(charts) >= 9 and all(int(c["data-drawn"]) > 0 for c in charts), [
        (c["data-chart"], c["data-drawn"]) for c in charts]
    sections = _sections(dom)
    legacy, safe = sections["legacy"], sections["safe"]
    # By eye, close up: the stale flip, then the deletion, then the empty answers. (A windowed
    # enactor walks its stale plan in milliseconds, so the flip and the deletion can be a few
    # pixels apart; badges closer than their width are drawn on rows of their own.)
    close_up = legacy.split('class="close-up"', 1)[1].split("The whole run", 1)[0]
    x = {b["data-kind"]: int(b["data-x"]) for b in _tags(close_up, "badge")}
    assert x["stale_flip"] < x["live_deleted"] < x["first_empty"], x
    for mark in ("stale-flip", "live-deleted", "empty", "served-empty"):
        assert _tags(legacy, mark), f"legacy report draws no {mark}"
        assert not _tags(safe, mark), f"safe report draws a {mark}"
    assert not _tags(safe, "badge") and "None of the race" in safe
    png = screenshot(path, tmp_path / "report.png", chromium)
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1400, 2400)


def test_the_report_shows_the_fleets_peak_share_and_ramps() -> None:
    record = legacy_record().named("fleet")
    clients = 100
    shares = {4.5: 0.1, 5.0: 0.4, 5.5: 0.8, 6.0: 0.95, 7.0: 1.0, 7.5: 0.9, 8.0: 0.5, 8.5: 0.05}
    record.load = [dataclasses.replace(s, fleet_clients=clients,
                                       fleet_failing=clients * shares.get(s.at, 0.0))
                   for s in record.load]
    fleet = figures(record).fleet
    assert fleet is not None and fleet.clients == clients and fleet.peak_share == 1.0
    assert fleet.ramp_s == pytest.approx(1.5) and fleet.recovery_ramp_s == pytest.approx(1.0)
    assert figures(legacy_record()).fleet is None  # no fleet, no figures
    page = render("demo", [record, safe_record()])
    assert "peak share of the fleet failing" in page and "fleet recovery ramp" in page
    row = page.split('data-run="fleet"', 1)[1].split("</tr>", 1)[0]
    assert "<td>100</td>" in row and ">100%</td>" in row and "1.5 s" in row and "1.0 s" in row
    assert 'class="mark fleet-share"' in page.split('<section id="run-1"', 1)[0]
