"""The report's page around the charts: style, script, summary table, violations."""

from __future__ import annotations

from collections.abc import Sequence

from services.core import checker, names
from services.report.model import RunRecord
from services.report.story import Figures
from services.report.svg import el, esc

MAX_WITNESSED = 6
"""Violations of one invariant listed with their witnesses before the rest fold away."""

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#1d1d1d;margin:0 auto;max-width:1320px;padding:12px 10px 40px}
h1{font-size:22px;margin:8px 0 2px} h2{font-size:18px;margin:28px 0 6px;
 border-bottom:2px solid #333;padding-bottom:3px} h3{font-size:15px;margin:18px 0 4px}
.mode{font-size:12px;font-weight:normal;color:#666;margin-left:10px}
.meta,.note{color:#666;font-size:12px}
ul.verdicts{list-style:none;padding:0;margin:6px 0}
ul.verdicts li{padding:5px 10px;margin:3px 0;border-left:6px solid #999;background:#f5f5f5}
ul.verdicts li.bad{border-color:#d62728;background:#fdecea}
ul.verdicts li.warn{border-color:#f07d1a;background:#fff4e5}
ul.verdicts li.good{border-color:#2ca02c;background:#eaf7ea}
table.summary{border-collapse:collapse;font-size:12.5px;margin:8px 0}
table.summary th,table.summary td{border:1px solid #ccc;padding:3px 7px;text-align:right}
table.summary th{background:#f0f0f0;font-weight:600;vertical-align:bottom}
table.summary td:first-child,table.summary th:first-child{text-align:left}
td.bad{background:#fbd5d2} td.zero{color:#888}
nav a{margin-right:14px}
ol.story{list-style:none;padding:0;margin:6px 0}
ol.story li{margin:3px 0} p.story.none{background:#eaf7ea;padding:6px 10px}
.num{display:inline-block;width:19px;height:19px;border-radius:50%;color:#fff;
 text-align:center;font-weight:bold;font-size:12px;line-height:19px;margin-right:6px}
.close-up{border:2px solid #f07d1a;padding:4px 0;border-radius:4px}
svg.chart{display:block;margin-top:10px;font-family:inherit}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:11.5px;color:#333;
 margin:2px 0 4px 150px}
.key svg{vertical-align:-3px;margin-right:4px}
details{margin:4px 0} summary{cursor:pointer}
.witness{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;margin-left:18px;
 color:#333}
.violation{margin:6px 0}
.cursor-label{font-size:11px;fill:#000;paint-order:stroke;stroke:#fff;stroke-width:3px}
"""

SCRIPT = """
(function(){
  var total=0, charts=document.querySelectorAll('svg.chart');
  charts.forEach(function(svg){
    var n=0;
    svg.querySelectorAll('.mark').forEach(function(m){
      var b=m.getBBox(); if(b.width>0||b.height>0){n++;}
    });
    svg.setAttribute('data-drawn', n); total+=n;
    svg.querySelectorAll('.badge').forEach(function(b){
      var box=b.getBBox(); b.setAttribute('data-x', Math.round(box.x+box.width/2));
    });
  });
  document.body.setAttribute('data-charts', charts.length);
  document.body.setAttribute('data-marks', total);
  var PLOT0=%(plot0)s, PLOT1=%(plot1)s;
  function cursor(svg){
    if(!svg._cursor){
      var ns='http://www.w3.org/2000/svg';
      var line=document.createElementNS(ns,'line');
      line.setAttribute('stroke','#000'); line.setAttribute('stroke-width','0.8');
      line.setAttribute('y1','36'); line.setAttribute('y2',svg.viewBox.baseVal.height-24);
      var label=document.createElementNS(ns,'text'); label.setAttribute('class','cursor-label');
      label.setAttribute('y','48');
      svg.appendChild(line); svg.appendChild(label); svg._cursor=[line,label];
    }
    return svg._cursor;
  }
  document.querySelectorAll('section.run').forEach(function(section){
    var group=section.querySelectorAll('svg.chart');
    group.forEach(function(svg){
      svg.addEventListener('mousemove',function(ev){
        var pt=svg.createSVGPoint(); pt.x=ev.clientX; pt.y=ev.clientY;
        var x=pt.matrixTransform(svg.getScreenCTM().inverse()).x;
        if(x<PLOT0||x>PLOT1){return;}
        var x0=+svg.getAttribute('data-x0'), x1=+svg.getAttribute('data-x1');
        var t=x0+(x-PLOT0)/(PLOT1-PLOT0)*(x1-x0);
        group.forEach(function(other){
          if(other.getAttribute('data-x0')!==svg.getAttribute('data-x0')){return;}
          var c=cursor(other);
          c[0].setAttribute('x1',x); c[0].setAttribute('x2',x);
          c[1].setAttribute('x',x+4); c[1].textContent='+'+t.toFixed(2)+' s';
        });
      });
    });
  });
  document.body.setAttribute('data-drawn','yes');
})();
"""

PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body>{body}<script>{script}</script></body></html>
"""


def page(title: str, body: str, plot: tuple[float, float]) -> str:
    script = SCRIPT % {"plot0": plot[0], "plot1": plot[1]}
    return PAGE_TEMPLATE.format(title=esc(title), style=STYLE, body=body, script=script)


def _seconds(value: float | None, still: bool = False) -> str:
    if still:
        return "never ended"
    return "-" if value is None else f"{value:.1f} s"


def summary_table(rows: Sequence[Figures]) -> str:
    """One row per run: what a user saw, what the history says, what the checker found."""
    show_converged = any(f.converged is not None for f in rows)
    show_stale = any(f.stale_answers is not None for f in rows)
    show_fleet = any(f.fleet is not None for f in rows)
    header = ["run", "name went empty", "time to empty", "outage length",
              "empty answers (I1)", "stale flips (I2)", "live trees deleted (I3)",
              "violations I1 / I2 / I3", "rejected batches", "requests", "failed requests",
              "peak failure ratio", "clients recovered after"]
    if show_stale:
        header.insert(5, "stale answers seen")
    if show_converged:
        header.append("converged (I4)")
    if show_fleet:
        header += ["clients in the fleet", "peak share of the fleet failing",
                   "fleet ramp (10 % to 90 % failing)", "fleet recovery ramp (90 % to 10 %)"]
    lines = [el("tr", {}, *[el("th", {}, esc(h)) for h in header])]
    for f in rows:
        rejected = sum(f.rejected_batches.values())
        cells: list[tuple[str, bool | None]] = [
            (f.label, None),
            ("yes" if f.outage else "no", f.outage),
            (_seconds(f.time_to_empty_s), None),
            (_seconds(f.outage_s, f.still_empty), f.outage),
            (str(f.empty_answers), f.empty_answers > 0),
            (str(f.stale_flips), f.stale_flips > 0),
            (str(f.live_deletions), f.live_deletions > 0),
            (" / ".join(str(f.violations.get(k, 0)) for k in ("I1", "I2", "I3")),
             any(f.violations.values())),
            (str(rejected) + (" (" + ", ".join(f"{k} {v}" for k, v in
                                              f.rejected_batches.items()) + ")"
                              if rejected else ""), rejected > 0),
            (str(f.requests), None),
            (str(f.failed_requests), f.failed_requests > 0),
            (f"{f.peak_failure_ratio:.0%}", f.peak_failure_ratio > 0),
            (_seconds(f.recovery_s), None),
        ]
        if show_stale:
            cells.insert(5, ("-" if f.stale_answers is None else str(f.stale_answers),
                             bool(f.stale_answers)))
        if show_converged:
            cells.append(("-" if f.converged is None else "yes" if f.converged else "no",
                          f.converged is False))
        if show_fleet:
            cells += _fleet_cells(f)
        tds = [el("td", {"class_": "bad" if bad else "zero" if bad is False else None},
                  esc(value)) for value, bad in cells]
        lines.append(el("tr", {"data_run": f.label}, *tds))
    problems = [el("li", {}, esc(f"{f.label}: {p}")) for f in rows for p in f.problems]
    notes = el("p", {"class_": "note"}, esc(
        "Time to empty: from the deletion of the tree the regional alias named to the first "
        "empty answer DNS polling saw. Outage length: first empty answer to the first answer "
        "with addresses after the last one. Requests: counted from the first second of "
        "healthy traffic. Violations: dnsrace check on the run's history. Fleet: the share "
        "of the virtual clients whose last request failed; its ramp runs from the last moment "
        "10 % or fewer were failing to 90 % failing, its recovery ramp from the last moment "
        "90 % were failing to 10 % or fewer (- : the share never got there)."))
    return (el("table", {"class_": "summary"}, *lines) + notes
            + (el("ul", {"class_": "problems"}, *problems) if problems else ""))


def _fleet_cells(f: Figures) -> list[tuple[str, bool | None]]:
    if f.fleet is None:
        return [("-", None)] * 4
    fleet = f.fleet
    return [(str(fleet.clients), None), (f"{fleet.peak_share:.0%}", fleet.peak_share > 0),
            (_seconds(fleet.ramp_s), None), (_seconds(fleet.recovery_ramp_s), None)]


def violations_section(record: RunRecord, violations: list[checker.Violation]) -> str:
    """Every violation the checker found, grouped by invariant, with its witnesses (the
    regional name's first, then in time order)."""
    title = el("h3", {}, esc(f"Invariant violations ({len(violations)}), from dnsrace check"))
    if not violations:
        return title + el("p", {"class_": "story none"}, esc(
            f"checked {len(record.events)} events: no violation of I1, I2 or I3"))
    t0 = record.t0_epoch_s
    out = [title]
    for inv in checker.Invariant:
        found = sorted((v for v in violations if v.invariant is inv),
                       key=lambda v: (v.endpoint != names.REGIONAL, v.at_ms))
        if not found:
            continue
        items = [_violation(v, t0) for v in found]
        shown, rest = items[:MAX_WITNESSED], items[MAX_WITNESSED:]
        block = el("h4", {}, esc(f"{inv.heading} ({len(found)})")) + "".join(shown)
        if rest:
            block += el("details", {}, el("summary", {}, esc(f"{len(rest)} more")), *rest)
        out.append(el("div", {"class_": "invariant", "data_invariant": inv.name}, block))
    return "".join(out)


def _violation(v: checker.Violation, t0: float) -> str:
    more = f" (seen {v.repeats} times)" if v.repeats > 1 else ""
    witnesses = [el("div", {"class_": "witness"}, esc(
        f"+{w.at_ms / 1000 - t0:7.2f} s  {checker.describe(w)}")) for w in v.witnesses]
    return el("div", {"class_": "violation"}, el("b", {}, esc(v.summary + more)), *witnesses)
