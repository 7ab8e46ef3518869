"""The story in pictures: one self-contained HTML report of a demo, a scenario run or a matrix.

``write_report(kind, runs)`` writes ``reports/<kind>-<time>.html`` and returns its path. The
file needs nothing else: the charts are inline SVG drawn here, the style and the small script
(hover read-out, and a count of what the browser drew) are inline too; it fetches nothing.

Everything comes from what the runs recorded (see :mod:`services.report.model`): the history
events, the monitor's DNS and load series, the run's result. docs/report.md says how to read it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from services.core import checker, names
from services.report.charts import clients, dns_answers, generations, latency
from services.report.model import RunRecord, capture, domain, fault_windows
from services.report.page import page, summary_table, violations_section
from services.report.scale import LinearScale
from services.report.story import Figures, Moment, MomentKind, figures, story
from services.report.svg import HATCH_DEFS, MOMENT_COLORS, PLOT, Frame, el, esc
from services.report.swimlanes import swimlanes

__all__ = ["RunRecord", "capture", "render", "write_report"]

Kind = Literal["demo", "run", "matrix"]
TITLES = {"demo": "dnsrace demo: the October 2025 race, legacy against safe",
          "run": "dnsrace run: a scenario, mode by mode",
          "matrix": "dnsrace matrix: which protection prevents which failure"}
CLOSE_UP_BEFORE_S = 1.0
CLOSE_UP_AFTER_S = 2.0


def write_report(kind: Kind, runs: Sequence[RunRecord], out_dir: Path = Path("reports"),
                 title: str | None = None) -> Path:
    """Write the report of ``runs`` to ``out_dir`` and return the file's path."""
    now = dt.datetime.now()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-{now:%Y%m%d-%H%M%S}"
    path = out_dir / f"{stem}.html"
    n = 1
    while path.exists():
        n += 1
        path = out_dir / f"{stem}-{n}.html"
    path.write_text(render(kind, runs, title, now), encoding="utf-8")
    return path.resolve()


def render(kind: Kind, runs: Sequence[RunRecord], title: str | None = None,
           now: dt.datetime | None = None) -> str:
    """The whole page, as one string."""
    now = now or dt.datetime.now()
    title = title or TITLES[kind]
    verdicts, sections, table_rows = [], [], []
    for i, record in enumerate(runs):
        violations = checker.check(record.events)
        fig = figures(record, violations)
        table_rows.append(fig)
        verdicts.append(_verdict(fig))
        sections.append(_run_section(i, record, violations))
    body = "".join([
        el("h1", {}, esc(title)),
        el("p", {"class_": "meta"}, esc(
            f"generated {now:%Y-%m-%d %H:%M:%S} from {len(runs)} recorded run(s): the history "
            f"events and the monitor's DNS and client series; times are seconds since the "
            f"monitor started")),
        el("h2", {}, "Summary"),
        el("ul", {"class_": "verdicts"}, *verdicts),
        summary_table(table_rows),
        el("nav", {}, *[el("a", {"href": f"#run-{i}"}, esc(r.label))
                        for i, r in enumerate(runs)]),
        *sections,
    ]) if runs else el("h1", {}, esc(title)) + el("p", {}, "No run was recorded.")
    return page(title, HATCH_DEFS + body, PLOT)


def _verdict(f: Figures) -> str:
    if f.outage:
        outage = "until the run ended" if f.still_empty else f"for {f.outage_s:.1f} s"
        text = (f"{f.label}: {names.REGIONAL} answered with no address {outage}; "
                f"{f.stale_flips} stale flips, {f.live_deletions} live trees deleted, "
                f"{f.failed_requests} failed requests")
        cls = "bad"
    elif f.stale_flips or f.live_deletions or any(f.violations.values()):
        text = (f"{f.label}: the name kept answering, but {f.stale_flips} stale flips and "
                f"{f.live_deletions} live trees deleted were recorded")
        cls = "warn"
    else:
        text = (f"{f.label}: the name kept answering; no stale flip, no live tree deleted, "
                f"{f.failed_requests} failed requests")
        cls = "good"
    return el("li", {"class_": cls}, esc(text))


def _numbers(moments: Sequence[Moment]) -> dict[MomentKind, int]:
    return {m.kind: i + 1 for i, m in enumerate(moments)}


def _run_section(index: int, record: RunRecord, violations: list[checker.Violation]) -> str:
    moments = story(record)
    numbers = _numbers(moments)
    faults = fault_windows(record)
    full = Frame(LinearScale(domain(record), PLOT, clamp=False), faults, moments, numbers)
    parts = [el("h2", {}, esc(f"{record.label}"),
                el("span", {"class_": "mode"}, esc(f"mode {record.mode}"))),
             _story_list(moments)]
    window = close_up_window(moments)
    if window is not None:
        zoom = Frame(LinearScale(window, PLOT, clamp=False), faults,
                     [m for m in moments if window[0] <= m.at <= window[1]], numbers)
        parts.append(el("h3", {}, esc(
            f"The race, close up: +{window[0]:.1f} s to +{window[1]:.1f} s")))
        parts.append(el("div", {"class_": "close-up"},
                        swimlanes(record, zoom), generations(record, zoom),
                        dns_answers(record, zoom)))
    parts.append(el("h3", {}, "The whole run"))
    parts += [swimlanes(record, full), generations(record, full), dns_answers(record, full),
              clients(record, full), latency(record, full)]
    parts.append(violations_section(record, violations))
    return el("section", {"id": f"run-{index}", "class_": "run", "data_run": record.label,
                          "data_mode": record.mode}, *parts)


def close_up_window(moments: Sequence[Moment]) -> tuple[float, float] | None:
    """From just before the stale flip to just after the name went empty (None: no race)."""
    key = [m for m in moments if m.kind in (MomentKind.STALE_FLIP, MomentKind.LIVE_DELETED,
                                            MomentKind.FIRST_EMPTY)]
    if not key:
        return None
    return key[0].at - CLOSE_UP_BEFORE_S, key[-1].at + CLOSE_UP_AFTER_S


def _story_list(moments: Sequence[Moment]) -> str:
    if not any(m.kind in (MomentKind.STALE_FLIP, MomentKind.LIVE_DELETED,
                          MomentKind.FIRST_EMPTY) for m in moments):
        return el("p", {"class_": "story none"}, esc(
            "None of the race's moments happened: no stale flip of the regional name, no "
            "deletion of the tree it named, no empty answer."))
    items = []
    for i, m in enumerate(moments):
        badge = el("span", {"class_": "num", "style": f"background:{MOMENT_COLORS[m.kind]}"},
                   str(i + 1))
        items.append(el("li", {"data_kind": m.kind.value, "data_at": f"{m.at:.3f}"}, badge,
                        el("b", {}, esc(f"+{m.at:.2f} s {m.title}")), esc(f": {m.detail}")))
    return el("ol", {"class_": "story"}, *items)
