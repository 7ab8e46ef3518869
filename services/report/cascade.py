"""The cascade's report section: DWFM's leases, queue, goodput and void work against DNS state.

``dnsrace cascade`` writes ``reports/cascade-<mode>-<time>.html`` from its timeline (one
sample a second, :mod:`services.core.cascade`): two charts on one time axis, the stretches
when the regional name was empty shaded, and every operator action (the DNS repair, the
throttle, each restart) marked and named. Self-contained: inline SVG, nothing fetched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from services.core import cascade
from services.report.model import Span
from services.report.page import page
from services.report.scale import LinearScale, line_path, nice_ticks, padded_domain
from services.report.svg import PLOT, Frame, chart, el, esc, grid, legend, text, y_labels

SERIES_COLORS = {
    "leases_held": "#2b6cb0",
    "queue_depth": "#dd6b20",
    "goodput": "#2f855a",
    "void": "#c53030",
}
ACTION_COLOR = "#6b46c1"


def empty_spans(timeline: cascade.Timeline) -> list[Span]:
    """The stretches when the regional name answered no address."""
    spans: list[Span] = []
    start: float | None = None
    for sample in timeline.samples:
        if not sample.dns_answers and start is None:
            start = sample.t_s
        elif sample.dns_answers and start is not None:
            spans.append(
                Span(
                    start,
                    sample.t_s,
                    "DNS empty",
                    "the regional name answered NOERROR with no address",
                )
            )
            start = None
    if start is not None:
        spans.append(Span(start, timeline.samples[-1].t_s, "DNS empty", "", open=True))
    return spans


def void_rate(timeline: cascade.Timeline) -> list[tuple[float, float]]:
    """Void lease work per second between consecutive samples (the collapse's waste)."""
    out = []
    for a, b in zip(timeline.samples, timeline.samples[1:], strict=False):
        if b.t_s > a.t_s:
            out.append((b.t_s, max(0.0, b.get("work_void") - a.get("work_void")) / (b.t_s - a.t_s)))
    return out


def _actions(
    timeline: cascade.Timeline, x: LinearScale, top: float, height: float
) -> tuple[list[str], list[str]]:
    lines, labels = [], []
    for i, action in enumerate(timeline.actions):
        px = x(action.t_s)
        lines.append(
            el(
                "line",
                {
                    "class_": "operator",
                    "x1": px,
                    "x2": px,
                    "y1": top,
                    "y2": height,
                    "stroke": ACTION_COLOR,
                    "stroke_width": 1.5,
                },
                title=f"+{action.t_s:.1f} s operators: {action.action} "
                f"{action.target} {action.detail}",
            )
        )
        labels.append(text(px + 3, top + 12 + 12 * (i % 3), action.action, 10, fill=ACTION_COLOR))
    return lines, labels


def _series_chart(
    name: str,
    frame: Frame,
    timeline: cascade.Timeline,
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    note: str,
) -> str:
    top, height = 40.0, 220.0
    values = [v for points in series.values() for _, v in points]
    lo, hi = padded_domain(0.0, max(values, default=1.0) or 1.0, 0.05, floor=0.0)
    y = LinearScale((lo, hi), (height - 4, top + 4))
    ticks = nice_ticks(lo, hi, 5)
    body = [
        el(
            "path",
            {
                "class_": f"series {key}",
                "d": line_path(points, frame.x, y),
                "fill": "none",
                "stroke": SERIES_COLORS[key],
                "stroke_width": 2,
            },
        )
        for key, points in series.items()
        if points
    ]
    lines, labels = _actions(timeline, frame.x, top, height)
    return chart(
        name,
        frame,
        height,
        [*body, *lines],
        title=title,
        top=top,
        note=note,
        axes=[grid(y, ticks)],
        labels=[y_labels(y, ticks), *labels],
    )


def cascade_section(timeline: cascade.Timeline, summary: Mapping[str, Any]) -> str:
    """The section: the figures, the two charts, the operator actions listed."""
    samples = timeline.samples
    end = samples[-1].t_s if samples else 1.0
    frame = Frame(LinearScale((0.0, max(end, 1.0)), PLOT), empty_spans(timeline), [], {})

    def points(key: str) -> list[tuple[float, float]]:
        return [(s.t_s, s.get(key)) for s in samples]

    leases = _series_chart(
        "leases",
        frame,
        timeline,
        {"leases_held": points("leases_held"), "queue_depth": points("queue_depth")},
        "DWFM: droplet leases held and lease work waiting",
        f"of {summary.get('leases_total')} droplets; shaded: the regional name empty",
    )
    work = _series_chart(
        "goodput",
        frame,
        timeline,
        {"goodput": points("goodput"), "void": void_rate(timeline)},
        "DWFM: goodput (leases established /s) and void work (finished after its deadline /s)",
        f"healthy goodput {summary.get('healthy_goodput_per_s')} /s; collapse: below 10 % of "
        "it for >= 20 s with DNS answering",
    )
    keys = legend(
        [
            ("line", SERIES_COLORS["leases_held"], "leases held"),
            ("line", SERIES_COLORS["queue_depth"], "queue depth"),
            ("line", SERIES_COLORS["goodput"], "goodput /s"),
            ("line", SERIES_COLORS["void"], "void work /s"),
            ("box", "#e53e3e", "regional name empty"),
            ("tick", ACTION_COLOR, "operator action"),
        ]
    )
    shown = (
        "dns_outage_s",
        "leases_total",
        "leases_min_held",
        "collapse",
        "collapse_s",
        "lease_recovery_s",
        "launch_success_ratio",
        "work_void",
        "work_started_late",
        "violations",
        "wall_s",
    )
    rows = [
        el("tr", {}, el("th", {}, esc(k)), el("td", {}, esc(summary[k])))
        for k in shown
        if k in summary
    ]
    actions = [
        el("li", {}, esc(f"+{a.t_s:.1f} s  {a.action} {a.target} {a.detail}".rstrip()))
        for a in timeline.actions
    ] or [el("li", {}, "none")]
    return el(
        "section",
        {"class_": "cascade", "id": "cascade"},
        el(
            "h2",
            {},
            esc(
                f"The cascade: DWFM ({summary.get('mode')}, protections "
                f"{', '.join(summary.get('protections', [])) or 'none'})"
            ),
        ),
        el("table", {"class_": "figures"}, *rows),
        keys,
        leases,
        work,
        el("h3", {}, "Operator actions"),
        el("ul", {}, *actions),
    )


def write_cascade_report(
    timeline: cascade.Timeline, summary: Mapping[str, Any], out_dir: Path = Path("reports")
) -> Path:
    now = dt.datetime.now()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"cascade-{summary.get('mode')}-{now:%Y%m%d-%H%M%S}.html"
    title = "dnsrace cascade: what the empty name did to EC2's droplet leases"
    body = (
        el("h1", {}, esc(title))
        + el(
            "p",
            {"class_": "meta"},
            esc(
                f"generated {now:%Y-%m-%d %H:%M:%S} from one cascade run, sampled once a second; "
                "times are seconds since the run started"
            ),
        )
        + cascade_section(timeline, summary)
    )
    path.write_text(page(title, body, PLOT), encoding="utf-8")
    return path.resolve()
