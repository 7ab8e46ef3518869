"""The report's charts of one run, each an inline SVG on the run's shared time scale."""

from __future__ import annotations

from services.core import checker, events, names
from services.report.model import (
    RunRecord,
    alias_flips,
    live_deletions,
    newest_plan,
    served,
)
from services.report.monitor import FAILURES
from services.report.scale import (
    LinearScale,
    LogScale,
    bucket_deltas,
    histogram_quantile,
    intervals,
    line_path,
    nice_ticks,
    padded_domain,
    step_path,
)
from services.report.svg import (
    COLORS,
    PLOT,
    Frame,
    chart,
    el,
    grid,
    legend,
    text,
    y_labels,
)

OUTCOMES = ("ok", *FAILURES)


def generations(record: RunRecord, frame: Frame) -> str:
    """The generation each named endpoint serves, against the newest plan."""
    x = frame.x
    top, bottom = 40.0, 250.0
    newest = newest_plan(record)
    regional = served(record, names.REGIONAL)
    values = [g for t, g in newest if frame.shows(t)]
    values += [e.generation for e in regional if frame.shows(record.t(e))]
    for endpoint in names.NAMED_ENDPOINTS:
        values += [e.generation for e in alias_flips(record, endpoint)
                   if frame.shows(record.t(e))]
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
    samples = [s for i, s in enumerate(record.dns) if frame.shows(s.at) or (
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
    fleet = [(s.at, s.fleet_failing / s.fleet_clients) for s in record.load
             if s.fleet_clients and x.domain[0] <= s.at <= x.domain[1]]
    if fleet:
        parts.append(el("path", {"class_": "mark fleet-share",
                                 "d": line_path(fleet, x, ratio_y), "fill": "none",
                                 "stroke": COLORS["fleet"], "stroke_width": 1.8,
                                 "stroke_dasharray": "4 2"},
                        title="share of the virtual clients whose last request failed"))
    body = chart("clients", frame, bottom, parts, top=top, axes=[grid(y, ticks)],
                 labels=labels,
                 title="Client requests per second, by outcome; failure ratio (right axis)")
    present = {o for i in seconds for o, v in i.counts.items() if v > 0}
    return body + legend([("box", COLORS.get(o, "#999"), o) for o in OUTCOMES if o in present]
                         + [("line", COLORS["ratio"], "failure ratio")]
                         + ([("dash", COLORS["fleet"], "share of the fleet failing")]
                            if fleet else []))


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
