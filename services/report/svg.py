"""Inline SVG, written by hand: elements, the frame every chart shares, legends.

Every chart of a run is drawn on the same time scale, with the fault windows shaded behind
it and the story's moments as numbered vertical lines across it. Marks (anything that stands
for data) carry the class ``mark`` so that the page's script, and the tests, can count what
the browser actually drew.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from services.report.model import Span
from services.report.scale import LinearScale, format_tick, stagger
from services.report.story import Moment, MomentKind

WIDTH = 1300
LEFT = 150
RIGHT = 64
PLOT = (LEFT, WIDTH - RIGHT)
AXIS_H = 26

COLORS = {
    "fault": "#f2c14e", "round": "#a9c8f5", "round_edge": "#3d6fb6", "stale": "#f07d1a",
    "stall": "#8d8d8d", "flip": "#3d6fb6", "lock": "#8e44ad", "rejected": "#d62728",
    "deleted": "#9a9a9a", "live_deleted": "#d62728", "newest": "#555555",
    "regional": "#1f77b4", "empty": "#d62728", "fips": "#2ca02c", "dualstack": "#9467bd",
    "ok": "#2ca02c", "dns_nodata": "#d62728", "dns_nxdomain": "#8c1c13",
    "dns_timeout": "#9a9a9a", "dns_servfail": "#e377c2", "connect_error": "#ff7f0e",
    "http_error": "#bcbd22", "timeout": "#6f6f6f", "ratio": "#111111",
    "p50": "#1f77b4", "p90": "#ff7f0e", "p99": "#d62728", "fleet": "#9467bd",
}
MOMENT_COLORS = {
    MomentKind.STALE_CHECK: "#6c757d", MomentKind.STALE_FLIP: "#f07d1a",
    MomentKind.LIVE_DELETED: "#d62728", MomentKind.FIRST_EMPTY: "#a50f15",
    MomentKind.REPAIR: "#198754", MomentKind.ANSWERS_AGAIN: "#0d6efd",
}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def el(tag: str, attrs: dict[str, object] | None = None, *children: str,
       title: str | None = None) -> str:
    """One SVG or HTML element; ``class_`` and ``data_x`` become ``class`` and ``data-x``."""
    parts = [tag]
    for key, value in (attrs or {}).items():
        if value is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        text = f"{value:.1f}" if isinstance(value, float) else value
        parts.append(f'{name}="{esc(text)}"')
    inner = (f"<title>{esc(title)}</title>" if title else "") + "".join(children)
    if not inner and tag not in ("div", "span", "td", "th", "p"):
        return f"<{' '.join(parts)}/>"
    return f"<{' '.join(parts)}>{inner}</{tag}>"


def text(x: float, y: float, content: str, size: int = 11, anchor: str = "start",
         cls: str = "", fill: str | None = None, weight: str | None = None) -> str:
    return el("text", {"x": x, "y": y, "font_size": size, "text_anchor": anchor,
                       "class_": cls or None, "fill": fill, "font_weight": weight},
              esc(content))


@dataclass(frozen=True)
class Frame:
    """What every chart of one run shares: the time scale, the faults, the moments."""

    x: LinearScale
    faults: Sequence[Span]
    moments: Sequence[Moment]
    numbers: dict[MomentKind, int]
    """The number each moment carries in the story list."""

    def shows(self, t: float) -> bool:
        """Is time ``t`` (seconds since the run's start) on the chart?"""
        return self.x.domain[0] <= t <= self.x.domain[1]


def moment_badges(frame: Frame, top: float) -> tuple[str, float]:
    """Numbered badges for the moments above a chart; returns (svg, height used)."""
    if not frame.moments:
        return "", 0.0
    xs = [frame.x(m.at) for m in frame.moments]
    rows = stagger(xs, 22.0)
    out = []
    for m, x, row in zip(frame.moments, xs, rows, strict=True):
        y = top + 10 + row * 20
        color = MOMENT_COLORS[m.kind]
        out.append(el("g", {"class_": "mark badge", "data_kind": m.kind.value,
                            "data_at": f"{m.at:.3f}"},
                      el("line", {"x1": x, "x2": x, "y1": y + 9, "y2": top + 10 + len(
                          set(rows)) * 20, "stroke": color, "stroke_width": 1}),
                      el("circle", {"cx": x, "cy": y, "r": 9, "fill": color}),
                      text(x, y + 4, str(frame.numbers[m.kind]), 11, "middle",
                           fill="#fff", weight="bold"),
                      title=f"{frame.numbers[m.kind]}. {m.title} at +{m.at:.2f} s: "
                            f"{m.detail}"))
    return "".join(out), len(set(rows)) * 20 + 4


def chart(name: str, frame: Frame, height: float, body: Iterable[str], *,
          title: str, top: float = 0.0, note: str = "", axes: Iterable[str] = (),
          labels: Iterable[str] = ()) -> str:
    """A chart's SVG: the plot from ``top`` to ``height`` with the faults shaded, ``axes``
    beneath the data, the data (``body``, clipped to the plot's width), the moments' lines,
    ``labels`` over everything, and the time axis."""
    x0, x1 = PLOT
    total = height + AXIS_H
    under = [el("rect", {"x": x0, "y": top, "width": x1 - x0, "height": height - top,
                         "fill": "#fbfbfb", "stroke": "#d0d0d0"}), *axes]
    clipped = []
    for f in frame.faults:
        left, width = frame.x.span(f.start, f.end)
        clipped.append(el("rect", {"class_": "fault", "x": left, "y": top, "width": width,
                                   "height": height - top, "fill": COLORS["fault"],
                                   "fill_opacity": 0.16},
                          title=f"fault {f.label} {f.detail} +{f.start:.2f}..+{f.end:.2f} s"))
    clipped.extend(body)
    for m in frame.moments:
        mx = frame.x(m.at)
        clipped.append(el("line", {"class_": "moment", "data_kind": m.kind.value,
                                   "x1": mx, "x2": mx, "y1": top, "y2": height,
                                   "stroke": MOMENT_COLORS[m.kind], "stroke_width": 1.2,
                                   "stroke_dasharray": "4 3"}))
    header = text(8, 14, title, 13, weight="bold") + (
        text(8, 30, note, 11, fill="#666") if note else "")
    return el("svg", {"class_": "chart", "data_chart": name, "width": WIDTH,
                      "height": total, "viewBox": f"0 0 {WIDTH} {total:.0f}",
                      "xmlns": "http://www.w3.org/2000/svg",
                      "data_x0": f"{frame.x.domain[0]:.3f}",
                      "data_x1": f"{frame.x.domain[1]:.3f}"},
              header, *under, el("g", {"clip_path": f"url(#{CLIP_ID})"}, *clipped),
              *labels, time_axis(frame.x, height))


def time_axis(x: LinearScale, y: float) -> str:
    out = []
    for t in x.ticks(12):
        px = x(t)
        out.append(el("line", {"x1": px, "x2": px, "y1": y, "y2": y + 5, "stroke": "#888"}))
        out.append(text(px, y + 17, f"+{format_tick(t)} s", 10, "middle", fill="#555"))
    return "".join(out)


def grid(y: Callable[[float], float], ticks: Sequence[float]) -> str:
    x0, x1 = PLOT
    return "".join(el("line", {"x1": x0, "x2": x1, "y1": y(v), "y2": y(v), "stroke": "#ececec"})
                   for v in ticks)


def y_labels(y: Callable[[float], float], ticks: Sequence[float], fmt: str = "{:g}",
             right: bool = False) -> str:
    x0, x1 = PLOT
    return "".join(text(x1 + 6 if right else x0 - 6, y(v) + 4, fmt.format(v), 10,
                        "start" if right else "end", fill="#555") for v in ticks)


def legend(items: Sequence[tuple[str, str, str]]) -> str:
    """An HTML legend: (swatch kind, colour, label) with kinds box, line, tick, diamond, tri."""
    cells = []
    for kind, color, label in items:
        shape = {
            "box": el("rect", {"x": 1, "y": 3, "width": 14, "height": 10, "fill": color}),
            "line": el("line", {"x1": 0, "x2": 16, "y1": 8, "y2": 8, "stroke": color,
                                "stroke_width": 2.5}),
            "dash": el("line", {"x1": 0, "x2": 16, "y1": 8, "y2": 8, "stroke": color,
                                "stroke_width": 2, "stroke_dasharray": "4 2"}),
            "tick": el("line", {"x1": 8, "x2": 8, "y1": 2, "y2": 14, "stroke": color,
                                "stroke_width": 2}),
            "diamond": el("path", {"d": "M8,2L14,8L8,14L2,8Z", "fill": color}),
            "tri": el("path", {"d": "M8,2L14,14L2,14Z", "fill": color}),
            "cross": el("path", {"d": "M3,3L13,13M13,3L3,13", "stroke": color,
                                 "stroke_width": 2}),
            "hatch": el("rect", {"x": 1, "y": 3, "width": 14, "height": 10,
                                 "fill": "url(#hatch)", "stroke": color}),
        }[kind]
        cells.append(el("span", {"class_": "key"},
                        el("svg", {"width": 16, "height": 16, "viewBox": "0 0 16 16"}, shape),
                        esc(label)))
    return el("div", {"class_": "legend"}, *cells)


CLIP_ID = "plot-clip"
HATCH_DEFS = el("svg", {"width": 0, "height": 0, "style": "position:absolute"},
                el("defs", {}, el("clipPath", {"id": CLIP_ID},
                                  el("rect", {"x": PLOT[0], "y": -10000, "width": PLOT[1] - PLOT[0],
                                              "height": 100000})),
                   el("pattern", {
                    "id": "hatch", "width": 6, "height": 6, "patternUnits": "userSpaceOnUse",
                    "patternTransform": "rotate(45)"},
                    el("rect", {"width": 6, "height": 6, "fill": "#e6e6e6"}),
                    el("line", {"x1": 0, "x2": 0, "y1": 0, "y2": 6, "stroke": "#8d8d8d",
                                "stroke_width": 2}))))
"""The stall hatching and the plot's clip, defined once per page."""
