"""The report's charts of one run, each an inline SVG on the run's shared time scale."""

from __future__ import annotations

from services.core import checker, events, names
from services.report.model import (
    RunRecord,
    alias_flips,
    enactor_sources,
    live_deletions,
    newest_plan,
    rounds,
    served,
    stalls,
)
from services.report.monitor import FAILURES
from services.report.scale import (
    LinearScale,
    LogScale,
    bucket_deltas,
    fits,
    histogram_quantile,
    intervals,
    line_path,
    nice_ticks,
    pack,
    padded_domain,
    step_path,
    tick_path,
)
from services.report.svg import (
    COLORS,
    PLOT,
    Frame,
    chart,
    el,
    grid,
    legend,
    moment_badges,
    text,
    y_labels,
)

LANE_H = 74
FAULT_ROW_H = 16
OUTCOMES = ("ok", *FAILURES)


def _visible(frame: Frame, t: float) -> bool:
    return frame.x.domain[0] <= t <= frame.x.domain[1]


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
    mine = [e for e in record.events if e.source == source and _visible(frame, record.t(e))]
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


def generations(record: RunRecord, frame: Frame) -> str:
    """The generation each named endpoint serves, against the newest plan."""
    x = frame.x
    top, bottom = 40.0, 250.0
    newest = newest_plan(record)
    regional = served(record, names.REGIONAL)
    values = [g for t, g in newest if _visible(frame, t)]
    values += [e.generation for e in regional if _visible(frame, record.t(e))]
    for endpoint in names.NAMED_ENDPOINTS:
        values += [e.generation for e in alias_flips(record, endpoint)
                   if _visible(frame, record.t(e))]
    lo, hi = padded_domain(min(values, default=0), max(values, default=1), 0.08)
    y = LinearScale((lo, hi), (bottom - 6, top + 6))
    end = x.domain[1]
    ticks = nice_ticks(lo, hi, 6)
    parts = [el("path", {"class_": "mark newest", "d": step_path(newest, x, y, end),
                             "fill": "none", "stroke": COLORS["newest"], "stroke_width": 1.5,
                             "stroke_dasharray": "5 3"}, title="newest plan published")]
    for endpoint, color in ((names.DUALSTACK, COLORS["dualstack"]),
                            (names.FIPS, COLORS["fips"])):
        points = [(record.t(e), float(e.generation)) for e in alias_flips(record, endpoint)]
        if points:
            parts.append(el("path", {"class_": "mark alias", "data_endpoint": endpoint,
                                     "d": step_path(points, x, y, end), "fill": "none",
                                     "stroke": color, "stroke_width": 1.2},
                            title=f"{endpoint}: plan its alias names (committed flips)"))
    served_points = [(record.t(e), float(e.generation)) for e in regional]
    if served_points:
        parts.append(el("path", {"class_": "mark served", "d": step_path(
            served_points, x, y, end), "fill": "none", "stroke": COLORS["regional"],
            "stroke_width": 2.5}, title=f"{names.REGIONAL}: plan behind the DNS answer"))
    for start, stop, generation in _empty_stretches(record, regional, end):
        parts.append(el("path", {"class_": "mark served-empty",
                                 "d": f"M{x(start):.1f},{y(generation):.1f}H{x(stop):.1f}",
                                 "stroke": COLORS["empty"], "stroke_width": 6},
                        title=f"{names.REGIONAL} answered NOERROR with NO address "
                              f"(alias names deleted plan {generation}): +{start:.2f} to "
                              f"+{stop:.2f} s"))
    for e in alias_flips(record, names.REGIONAL):
        if e.generation < e.previous:
            px, py = x(record.t(e)), y(e.generation)
            parts.append(el("path", {"class_": "mark stale-flip", "d": f"M{px:.1f},{py - 8:.1f}"
                                     f"l6,11h-12z", "fill": COLORS["stale"]},
                            title=f"+{record.t(e):.2f} s {checker.describe(e)}"))
    for endpoint in names.NAMED_ENDPOINTS:
        for gone in live_deletions(record, endpoint):
            px, py = x(record.t(gone)), y(gone.generation)
            parts.append(el("path", {"class_": "mark live-deleted", "d": f"M{px:.1f},{py - 7:.1f}"
                                     f"l7,7l-7,7l-7,-7z", "fill": COLORS["live_deleted"],
                                     "stroke": "#fff"},
                            title=f"+{record.t(gone):.2f} s {checker.describe(gone)}"))
            if endpoint == names.REGIONAL:
                label = f"plan-{gone.generation} tree deleted"
                right = px + 9 + len(label) * 6 <= PLOT[1]
                parts.append(text(px + 9 if right else px - 9, py + 18, label, 10,
                                  "start" if right else "end", fill=COLORS["live_deleted"],
                                  weight="bold"))
    if not regional:
        parts.append(text(PLOT[0] + 10, top + 20, f"no DNS answer for {names.REGIONAL} "
                          "was sampled in the history", 11, fill="#a00"))
    body = chart("generations", frame, bottom, parts, top=top, axes=[grid(y, ticks)],
                 labels=[y_labels(y, ticks)],
                 title="Plan generation served, against the newest plan",
                 note="blue: what the DNS server answered for the regional name; red: it "
                      "answered with no address")
    return body + legend([
        ("dash", COLORS["newest"], "newest plan published"),
        ("line", COLORS["regional"], f"{names.REGIONAL} (DNS answers)"),
        ("line", COLORS["empty"], "answer with no address"),
        ("line", COLORS["fips"], f"{names.FIPS} (alias flips)"),
        ("line", COLORS["dualstack"], f"{names.DUALSTACK} (alias flips)"),
        ("tri", COLORS["stale"], "stale flip (I2)"),
        ("diamond", COLORS["live_deleted"], "live tree deleted (I3)"),
    ])


def _empty_stretches(record: RunRecord, answers: list[events.DnsAnswer], end: float
                     ) -> list[tuple[float, float, int]]:
    out = []
    start: events.DnsAnswer | None = None
    for e in answers:
        if e.addresses == 0 and start is None:
            start = e
        elif e.addresses > 0 and start is not None:
            out.append((record.t(start), record.t(e), start.generation))
            start = None
    if start is not None:
        out.append((record.t(start), end, start.generation))
    return out


def dns_answers(record: RunRecord, frame: Frame) -> str:
    """What polling the regional name saw: addresses per answer, empty answers in red."""
    x = frame.x
    top, bottom = 40.0, 150.0
    samples = [s for i, s in enumerate(record.dns) if _visible(frame, s.at) or (
        s.at < x.domain[0] and i + 1 < len(record.dns) and record.dns[i + 1].at >= x.domain[0])]
    most = max((s.addresses for s in samples), default=1) or 1
    y = LinearScale((0, most), (bottom, top + 4))
    ticks = nice_ticks(0, most, 3)
    parts = []
    nexts = [b.at for b in samples[1:]] + [samples[-1].at + record.dns_every_s if samples else 0]
    for s, following in zip(samples, nexts, strict=True):
        px = x(s.at)
        width = max(1.0, x.length(min(following - s.at, 3 * record.dns_every_s)) - 1)
        if s.addresses > 0:
            parts.append(el("rect", {"class_": "mark answer", "x": px, "y": y(s.addresses),
                                     "width": width, "height": bottom - y(s.addresses),
                                     "fill": COLORS["ok"]}))
        else:
            color = COLORS.get(s.outcome, COLORS["dns_timeout"])
            parts.append(el("rect", {"class_": "mark answer empty" if s.empty
                                     else "mark answer failed", "data_outcome": s.outcome,
                                     "x": px, "y": top + 4, "width": width,
                                     "height": bottom - top - 4, "fill": color,
                                     "fill_opacity": 0.85},
                            title=f"+{s.at:.2f} s: {s.outcome}"
                                  + (" (NOERROR, 0 addresses)" if s.empty else "")))
    if not samples:
        parts.append(text(PLOT[0] + 10, top + 24, "no DNS polling in this record", 11,
                          fill="#a00"))
    body = chart("dns", frame, bottom, parts, top=top, axes=[grid(y, ticks)],
                 labels=[y_labels(y, ticks)],
                 title=f"DNS answers for {names.REGIONAL} (polled every "
                       f"{record.dns_every_s:g} s, no cache)",
                 note="height: addresses in the answer")
    return body + legend([
        ("box", COLORS["ok"], "addresses returned"),
        ("box", COLORS["dns_nodata"], "NOERROR with no address (empty answer, I1)"),
        ("box", COLORS["dns_timeout"], "no answer (timeout)"),
        ("box", COLORS["dns_nxdomain"], "NXDOMAIN"),
    ])


def clients(record: RunRecord, frame: Frame) -> str:
    """Client requests per second by outcome (stacked) and the share that failed."""
    x = frame.x
    top, bottom = 40.0, 230.0
    seconds = [i for i in intervals([(s.at, s.requests) for s in record.load], 1.0)
               if i.end >= x.domain[0] and i.start <= x.domain[1]]
    peak = max((i.total / (i.end - i.start) for i in seconds if i.end > i.start), default=1.0)
    y = LinearScale((0, peak * 1.1 or 1.0), (bottom, top))
    ratio_y = LinearScale((0, 1), (bottom, top))
    ticks = nice_ticks(0, peak * 1.1 or 1.0, 4)
    labels = [y_labels(y, ticks), y_labels(ratio_y, [0, 0.5, 1.0], "{:.0%}", right=True)]
    parts = []
    ratio_points = []
    for i in seconds:
        left, width = x.span(i.start, i.end)
        base = 0.0
        for outcome in OUTCOMES:
            rate = i.rate(outcome)
            if rate <= 0:
                continue
            parts.append(el("rect", {"class_": f"mark outcome outcome-{outcome}",
                                     "x": left + 0.5, "y": y(base + rate),
                                     "width": max(1.0, width - 1),
                                     "height": max(0.5, y(base) - y(base + rate)),
                                     "fill": COLORS.get(outcome, "#999")},
                            title=f"+{i.start:.1f}..+{i.end:.1f} s: {outcome} {rate:.0f}/s"))
            base += rate
        total = i.total
        if total > 0:
            failed = sum(i.counts.get(o, 0.0) for o in FAILURES)
            ratio_points.append((i.end, failed / total))
    if ratio_points:
        parts.append(el("path", {"class_": "mark ratio", "d": line_path(ratio_points, x, ratio_y),
                                 "fill": "none",
                                 "stroke": COLORS["ratio"], "stroke_width": 1.8},
                        title="share of requests that failed, per second"))
    else:
        parts.append(text(PLOT[0] + 10, top + 24, "no client metrics in this record", 11,
                          fill="#a00"))
    body = chart("clients", frame, bottom, parts, top=top, axes=[grid(y, ticks)],
                 labels=labels,
                 title="Client requests per second, by outcome; failure ratio (right axis)")
    present = {o for i in seconds for o, v in i.counts.items() if v > 0}
    return body + legend([("box", COLORS.get(o, "#999"), o) for o in OUTCOMES if o in present]
                         + [("line", COLORS["ratio"], "failure ratio")])


def latency(record: RunRecord, frame: Frame) -> str:
    """Request latency percentiles per second, from the clients' histogram."""
    if len(record.latency) < 2:
        return el("p", {"class_": "note"}, "Latency percentiles: not recorded in this run "
                  "(the load samples carry no latency histogram).")
    x = frame.x
    top, bottom = 40.0, 190.0
    series: dict[str, list[tuple[float, float]]] = {"p50": [], "p90": [], "p99": []}
    for i in intervals([(s.at, s.buckets) for s in record.latency], 1.0):
        buckets = bucket_deltas({}, i.counts)
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            value = histogram_quantile(q, buckets)
            if value is not None and value > 0:
                series[name].append(((i.start + i.end) / 2, value))
    values = [v for points in series.values() for _, v in points]
    if not values:
        return el("p", {"class_": "note"}, "Latency percentiles: no request in the window.")
    y = LogScale((min(values) / 1.5, max(values) * 1.5), (bottom, top))
    parts = []
    for name, points in series.items():
        parts.append(el("path", {"class_": f"mark latency-{name}", "d": line_path(points, x, y),
                                 "fill": "none",
                                 "stroke": COLORS[name], "stroke_width": 1.6},
                        title=f"request latency {name}, per second"))
    body = chart("latency", frame, bottom, parts, top=top, axes=[grid(y, y.ticks())],
                 labels=[y_labels(y, y.ticks(), "{:g} s")],
                 title="Request latency percentiles, per second (log scale)",
                 note="from the clients' dnsrace_client_request_seconds histogram")
    return body + legend([("line", COLORS[n], n) for n in series])
