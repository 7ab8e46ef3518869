"""``dnsrace outage``'s report: the timeline beside AWS's, then one section per stage.

Each section charts what shows that stage (leases and DWFM's queue, pending launches, Network
Manager's backlog, targets in service per AZ, the NLB name's AZ records, the service's calls)
over the whole run, the stage's stretch shaded and the operators' actions marked. Self-contained:
inline SVG, nothing fetched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from services.core import cascade
from services.core import outage as model
from services.core.names import AZS
from services.report.cascade import _actions
from services.report.model import Span
from services.report.page import page
from services.report.scale import LinearScale, line_path, nice_ticks, padded_domain
from services.report.svg import PLOT, Frame, chart, el, esc, grid, legend, text, y_labels

Series = Callable[[cascade.Sample, cascade.Sample], float]
PALETTE = ("#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#6b46c1")


def _value(key: str) -> Series:
    return lambda s, before: s.get(key)


def _rate(key: str) -> Series:
    def rate(s: cascade.Sample, before: cascade.Sample) -> float:
        dt_s = s.t_s - before.t_s
        return (s.get(key) - before.get(key)) / dt_s if dt_s > 0 else 0.0
    return rate


def _ok_percent(s: cascade.Sample, before: cascade.Sample) -> float:
    ok = s.get("service_ok") - before.get("service_ok")
    failed = s.get("service_failed") - before.get("service_failed")
    return 100.0 * ok / (ok + failed) if ok + failed > 0 else 0.0


DWFM: dict[str, Series] = {"leases held": _value("leases_held"),
                           "lease work waiting": _value("queue_depth"),
                           "goodput /s": _value("goodput")}
NAME: dict[str, Series] = {"regional name answers (1/0)": lambda s, b: float(s.dns_answers)}
NLB_NAME: dict[str, Series] = {"NLB name's AZ records": _value("az_records")}
CHARTS: dict[str, dict[str, Series]] = {
    "race": NAME, "empty_name": NAME, "dns_repair": NAME,
    "leases_lost": DWFM, "dwfm_collapse": DWFM, "throttle_restarts": DWFM,
    "launch_surge": {"launches pending": _value("launches_pending"),
                     "launches ok /s": _rate("launches_ok")},
    "propagation_backlog": {"Network Manager's backlog": _value("backlog"),
                            "oldest wait s": _value("oldest_wait_s")},
    "in_service_without_connectivity": {
        "instances without connectivity": _value("without_connectivity"),
        "in service beyond connected": lambda s, b: max(
            0.0, model.in_service_without_connectivity(s))},
    "health_checks_flapping": {**{f"in service {az}": _value(f"healthy_{az}") for az in AZS},
                               "taken out of service /s": _rate("targets_failed")},
    "az_failover": NLB_NAME, "failover_disabled": NLB_NAME,
    "recovery": {"service calls ok %": _ok_percent},
}


def _chart(key: str, stage: model.Stage, timeline: cascade.Timeline, end: float) -> str:
    pairs = list(zip(timeline.samples, timeline.samples[1:], strict=False))
    span = ([Span(stage.onset_s, stage.end_s if stage.end_s is not None else end, key)]
            if stage.onset_s is not None else [])
    frame = Frame(LinearScale((0.0, max(end, 1.0)), PLOT), span, [], {})
    series = {label: [(s.t_s, f(s, before)) for before, s in pairs]
              for label, f in CHARTS[key].items()}
    top, height = 40.0, 200.0
    values = [v for points in series.values() for _, v in points]
    lo, hi = padded_domain(0.0, max(values, default=1.0) or 1.0, 0.05, floor=0.0)
    y = LinearScale((lo, hi), (height - 4, top + 4))
    ticks = nice_ticks(lo, hi, 5)
    body = [el("path", {"class_": "series", "d": line_path(points, frame.x, y), "fill": "none",
                        "stroke": PALETTE[i % len(PALETTE)], "stroke_width": 2})
            for i, points in enumerate(series.values()) if points]
    lines, labels = _actions(timeline, frame.x, top, height)
    keys = legend([("line", PALETTE[i % len(PALETTE)], label)
                   for i, label in enumerate(series)] + [("box", "#e53e3e", "this stage")])
    return keys + chart(key, frame, height, [*body, *lines], title="", top=top,
                        axes=[grid(y, ticks)], labels=[y_labels(y, ticks), *labels,
                                                       text(PLOT[0], top - 8, key, 11)])


def _when(stage: model.Stage) -> str:
    if stage.onset_s is None:
        return "did not happen in this run"
    end = "still going at the end" if stage.end_s is None else f"+{stage.end_s:.0f} s"
    return f"+{stage.onset_s:.0f} s to {end}"


def outage_sections(timeline: cascade.Timeline, stages: Sequence[model.Stage],
                    summary: Mapping[str, Any]) -> str:
    end = timeline.samples[-1].t_s if timeline.samples else 1.0
    by_key = {s.key: s for s in stages}
    rows = [el("tr", {}, el("th", {}, "stage"), el("th", {}, "emulated"),
               el("th", {}, "AWS (PDT)"))]
    sections = []
    for aws in model.STAGES:
        stage = by_key.get(aws.key, model.Stage(aws.key, None, None))
        when = f"{aws.aws_onset} to {aws.aws_end}"
        rows.append(el("tr", {}, el("td", {}, esc(aws.title)), el("td", {}, esc(_when(stage))),
                       el("td", {}, esc(when))))
        sections.append(el("section", {"class_": "stage", "id": aws.key},
                           el("h2", {}, esc(aws.title)),
                           el("p", {}, esc(f"emulated: {_when(stage)}; AWS: {when}")),
                           _chart(aws.key, stage, timeline, end)))
    figures = [el("tr", {}, el("th", {}, esc(k)), el("td", {}, esc(summary[k])))
               for k in ("mode", "protections", "in_aws_order", "invariants",
                         "nlb_min_az_records", "service_success_ratio_after_repair", "wall_s")
               if k in summary]
    actions = [el("li", {}, esc(f"+{a.t_s:.1f} s  {a.action} {a.target} {a.detail}".rstrip()))
               for a in timeline.actions] or [el("li", {}, "none")]
    return (el("table", {"class_": "summary"}, *figures)
            + el("h2", {}, "Timeline beside AWS's")
            + el("table", {"class_": "summary"}, *rows)
            + el("h3", {}, "Operator actions") + el("ul", {}, *actions)
            + "".join(sections))


def write_outage_report(timeline: cascade.Timeline, stages: Sequence[model.Stage],
                        summary: Mapping[str, Any], out_dir: Path = Path("reports")) -> Path:
    now = dt.datetime.now()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"outage-{summary.get('mode')}-{now:%Y%m%d-%H%M%S}.html"
    title = f"dnsrace outage ({summary.get('mode')}): the whole incident, stage by stage"
    body = (el("h1", {}, esc(title))
            + el("p", {"class_": "meta"}, esc(
                f"generated {now:%Y-%m-%d %H:%M:%S} from one outage run, sampled once a "
                "second; times are seconds since the run started"))
            + outage_sections(timeline, stages, summary))
    path.write_text(page(title, body, PLOT), encoding="utf-8")
    return path.resolve()
