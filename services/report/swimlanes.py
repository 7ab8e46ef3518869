"""The report's swimlanes: one lane per enactor (checks, stalls, flips, rejections, clean-ups)
and the fault rows above them, on the run's shared time scale."""

from __future__ import annotations

from services.core import checker, events, names
from services.report.model import (
    RunRecord,
    enactor_sources,
    rounds,
    stalls,
)
from services.report.scale import (
    fits,
    pack,
    tick_path,
)
from services.report.svg import (
    COLORS,
    PLOT,
    Frame,
    chart,
    el,
    legend,
    moment_badges,
    text,
)

LANE_H = 74


FAULT_ROW_H = 16


def swimlanes(record: RunRecord, frame: Frame, badges: bool = True) -> str:
    """A lane per enactor: plan being applied, stalls, flips and lock losses, clean-up."""
    x = frame.x
    top = 40.0
    parts: list[str] = []
    labels: list[str] = []
    if badges and frame.moments:
        badge_svg, used = moment_badges(frame, top)
        labels.append(badge_svg)
        top += used
    faults = [f for f in frame.faults if f.end >= x.domain[0] and f.start <= x.domain[1]]
    starts = [max(x(f.start), PLOT[0]) for f in faults]
    rows = pack([(start, max(x(f.end), start + len(f.label + f.detail) * 6 + 12))
                 for f, start in zip(faults, starts, strict=True)], 4)
    fault_h = (max(rows) + 1) * (FAULT_ROW_H + 2) if faults else 0
    labels.append(text(8, top + 12, "faults", 12, weight="bold"))
    for f, row in zip(faults, rows, strict=True):
        left, width = x.span(f.start, f.end)
        y = top + row * (FAULT_ROW_H + 2)
        parts.append(el("rect", {"class_": "mark fault-bar", "x": left, "y": y,
                                 "width": width, "height": FAULT_ROW_H, "rx": 3,
                                 "fill": COLORS["fault"]},
                        title=f"fault {f.label} {f.detail}: +{f.start:.2f} to +{f.end:.2f} s"
                              + (" (still active at the end)" if f.open else "")))
        parts.append(text(max(left, PLOT[0]) + 4, y + 12, f"{f.label} {f.detail}".strip(), 10))
    top += max(fault_h, FAULT_ROW_H) + 8
    axes = []
    for i, source in enumerate(enactor_sources(record)):
        lane_axes, lane = _lane(record, frame, source, top + i * LANE_H)
        axes.append(lane_axes)
        parts.append(lane)
    height = top + len(enactor_sources(record)) * LANE_H
    body = chart("swimlanes", frame, height, parts, axes=axes, labels=labels,
                 title="Enactors: which plan each applies, stalls, flips, lock losses, "
                       "clean-up", top=40.0)
    return body + legend([
        ("box", COLORS["round"], "round: staleness check to round done (plan G)"),
        ("box", COLORS["stale"], "round that flipped endpoints BACK to an older plan"),
        ("box", "#f5b7b1", "round whose every batch was rejected"),
        ("hatch", COLORS["stall"], "stalled (fault)"),
        ("tick", COLORS["flip"], "flip committed"),
        ("tri", COLORS["stale"], "stale flip of a named endpoint"),
        ("tick", COLORS["lock"], "lock lost, then back-off (line)"),
        ("cross", COLORS["rejected"], "batch rejected"),
        ("tick", COLORS["deleted"], "clean-up deleted an old tree"),
        ("diamond", COLORS["live_deleted"], "clean-up deleted a LIVE tree (I3)"),
        ("box", COLORS["fault"], "fault window"),
    ])


def _lane(record: RunRecord, frame: Frame, source: str, top: float) -> tuple[str, str]:
    """(the lane's separator and names, its marks)."""
    x = frame.x
    x0, x1 = PLOT
    az = source.removeprefix("enactor/")
    axes = [el("line", {"x1": 0, "x2": x1, "y1": top, "y2": top, "stroke": "#d0d0d0"}),
            text(8, top + 20, az, 13, weight="bold"), text(8, top + 35, "enactor", 10,
                                                              fill="#777")]
    for label, y in (("plan", 14), ("stall", 32), ("flips, locks", 50), ("clean-up", 67)):
        axes.append(text(x0 - 6, top + y, label, 9, "end", fill="#888"))
    parts: list[str] = []
    for r in rounds(record, source):
        if r.end < x.domain[0] or r.start > x.domain[1]:
            continue
        left, width = x.span(r.start, r.end)
        fill = (COLORS["stale"] if r.stale_flips else
                "#f5b7b1" if r.completed and r.committed == 0 and r.rejected else COLORS["round"])
        summary = (f"{az}: round for plan {r.generation}, +{r.start:.2f} to +{r.end:.2f} s: "
                   + (f"{r.committed} flips ({r.stale_flips} BACK to this older plan), "
                      f"{r.rejected} rejected, {r.deleted} deletions" if r.completed
                      else "not completed"))
        parts.append(el("rect", {"class_": "mark round", "data_generation": r.generation,
                                 "x": left, "y": top + 4, "width": width, "height": 14,
                                 "fill": fill, "stroke": COLORS["round_edge"],
                                 "stroke_width": 0.6,
                                 "stroke_dasharray": None if r.completed else "3 2"},
                        title=summary))
        shown_left, shown_right = max(left, x0), min(left + width, x1)
        if fits(str(r.generation), shown_right - shown_left - 2, 10):
            parts.append(text((shown_left + shown_right) / 2, top + 15, str(r.generation), 10,
                              "middle"))
    for s in stalls(record, source):
        left, width = x.span(s.start, s.end)
        label = f"stalled {s.label} ({s.detail})"
        parts.append(el("rect", {"class_": "mark stall", "x": left, "y": top + 22,
                                 "width": width, "height": 14, "fill": "url(#hatch)",
                                 "stroke": COLORS["stall"]},
                        title=f"{az} {label}: +{s.start:.2f} to +{s.end:.2f} s"))
        if fits(label, min(left + width, x1) - max(left, x0) - 6, 10):
            parts.append(text(max(left, x0) + 4, top + 33, label, 10, fill="#333"))
    parts.append(_lane_events(record, frame, source, top))
    return "".join(axes), "".join(parts)


def _lane_events(record: RunRecord, frame: Frame, source: str, top: float) -> str:
    x = frame.x
    mine = [e for e in record.events if e.source == source and frame.shows(record.t(e))]
    flips = [e for e in mine if isinstance(e, events.BatchCommitted)]
    locks = [e for e in mine if isinstance(e, events.LockLost)]
    rejected = [e for e in mine if isinstance(e, events.BatchRejected)]
    deleted = [e for e in mine if isinstance(e, events.TreeDeleted)]
    parts = []
    normal = [record.t(e) for e in flips if e.generation >= e.previous]
    if normal:
        parts.append(el("path", {"class_": "mark flips", "d": tick_path(normal, x, top + 40, 12),
                                 "stroke": COLORS["flip"], "stroke_width": 1},
                        title=f"{len(normal)} flips committed"))
    if locks:
        lines = "".join(f"M{x(record.t(e)):.1f},{top + 47:.1f}H{x(record.t(e) + e.backoff_s):.1f}"
                        for e in locks)
        parts.append(el("path", {"class_": "mark locks",
                                 "d": tick_path([record.t(e) for e in locks], x, top + 41, 12)
                                 + lines, "stroke": COLORS["lock"], "stroke_width": 1.2},
                        title=f"{len(locks)} lock losses, {sum(e.backoff_s for e in locks):.1f}"
                              f" s of back-off in all"))
    for e in flips:
        if e.generation < e.previous and e.endpoint in names.NAMED_ENDPOINTS:
            px = x(record.t(e))
            parts.append(el("path", {"class_": "mark stale-flip", "data_at": f"{record.t(e):.3f}",
                                     "d": f"M{px:.1f},{top + 39:.1f}l6,13h-12z",
                                     "fill": COLORS["stale"], "stroke": "#fff",
                                     "stroke_width": 0.5},
                            title=f"+{record.t(e):.2f} s {checker.describe(e)}"))
    stale_cells = [record.t(e) for e in flips
                   if e.generation < e.previous and e.endpoint not in names.NAMED_ENDPOINTS]
    if stale_cells:
        parts.append(el("path", {"class_": "mark stale-flips",
                                 "d": tick_path(stale_cells, x, top + 39, 14),
                                 "stroke": COLORS["stale"], "stroke_width": 2},
                        title=f"{len(stale_cells)} cell endpoints flipped BACK to an older plan"))
    if rejected:
        reasons: dict[str, int] = {}
        for r in rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        d = "".join(f"M{x(record.t(r)) - 3:.1f},{top + 58:.1f}l6,6m0,-6l-6,6" for r in rejected)
        parts.append(el("path", {"class_": "mark rejected", "d": d,
                                 "stroke": COLORS["rejected"], "stroke_width": 1.2},
                        title=f"{len(rejected)} batches rejected: "
                              + ", ".join(f"{k} {v}" for k, v in reasons.items())))
    old = [record.t(e) for e in deleted if not e.live]
    if old:
        parts.append(el("path", {"class_": "mark deletions", "d": tick_path(old, x, top + 57, 12),
                                 "stroke": COLORS["deleted"], "stroke_width": 1},
                        title=f"{len(old)} old trees deleted by clean-up"))
    for gone in deleted:
        if gone.live:
            px = x(record.t(gone))
            parts.append(el("path", {"class_": "mark live-deleted",
                                     "data_at": f"{record.t(gone):.3f}",
                                     "d": f"M{px:.1f},{top + 56:.1f}l6,7l-6,7l-6,-7z",
                                     "fill": COLORS["live_deleted"], "stroke": "#fff",
                                     "stroke_width": 0.5},
                            title=f"+{record.t(gone):.2f} s {checker.describe(gone)}"))
    return "".join(parts)
