"""The Grafana dashboard of the race, as plain data: the one source of its JSON.

``python -m dashboards.generate`` writes it to ``dashboards/grafana/dashboards/dnsrace.json``;
a test checks that the committed file is what this module builds. Every query names the
Prometheus datasource by its fixed uid (provisioned by ``datasource_provisioning``), so the
dashboard loads as is, with no ``${DS_...}`` inputs to fill in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DASHBOARD_UID = "dnsrace-race"
DATASOURCE_UID = "dnsrace-prometheus"
DATASOURCE_NAME = "dnsrace Prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
PROMETHEUS_URL = "http://127.0.0.1:9090"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/dnsrace"
"""Where the provider reads dashboard files inside Grafana (mount grafana/dashboards there)."""
SCHEMA_VERSION = 39
FAULT_ANNOTATION = "max by (type, target) (dnsrace_fault_active) > 0"

RATE = "[$__rate_interval]"
AZ = 'az=~"$az"'
REQUESTS = "dnsrace_client_requests_total"
FAILURE_RATIO = (f'sum(rate({REQUESTS}{{outcome!="ok"}}{RATE})) / sum(rate({REQUESTS}{RATE}))')
ENDPOINT_REQUESTS = "dnsrace_client_endpoint_requests_total"
FAILURE_RATIO_BY_ENDPOINT = (
    f'sum by (endpoint) (rate({ENDPOINT_REQUESTS}{{outcome!="ok"}}{RATE}))'
    f" / sum by (endpoint) (rate({ENDPOINT_REQUESTS}{RATE}))"
)
FAILURE_RATIO_BY_OUTCOME = (
    f'sum by (outcome) (rate({REQUESTS}{{outcome!="ok"}}{RATE}))'
    f" / ignoring(outcome) group_left sum(rate({REQUESTS}{RATE}))"
)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    max_value: float | None = None
    stacked: bool = False
    needs: tuple[str, ...] = ()
    """Processes it reads besides the race cluster's (issue 15's: netmgr, nlb, instances_*,
    service_load); the race-only tests leave such a panel to the test that runs them."""


@dataclass
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


ROWS = [
    Row("Clients: what the outage looks like", [
        Panel("Client failure ratio",
              "Share of client requests that failed (A: all failures; B: by outcome; C: by "
              "the endpoint asked, with DNSRACE_LOAD_OTHER_SHARE of the requests on the FIPS "
              "endpoint and the cells). dns_nodata is the October 2025 symptom: NOERROR with "
              "no address.",
              (Query(FAILURE_RATIO, "all failures"),
               Query(FAILURE_RATIO_BY_OUTCOME, "{{outcome}}"),
               Query(FAILURE_RATIO_BY_ENDPOINT, "endpoint {{endpoint}}")),
              unit="percentunit", max_value=1.0),
        Panel("Requests per second by outcome",
              "Client requests completed per second, by outcome (ok or why it failed).",
              (Query(f"sum by (outcome) (rate({REQUESTS}{RATE}))", "{{outcome}}"),),
              unit="reqps", stacked=True),
    ]),
    Row("DNS: what the regional name answers", [
        Panel("DNS answers by rcode, and empty answers",
              "Answers of the authoritative server per second by response code; empty: "
              "NOERROR answers for an endpoint whose alias names a missing tree.",
              (Query("sum by (rcode) (rate(dnsrace_dns_queries_total[$__rate_interval]))",
                     "{{rcode}}"),
               Query("sum by (endpoint) (rate(dnsrace_dns_empty_answers_total"
                     "[$__rate_interval]))", "empty: {{endpoint}}")),
              unit="ops"),
        Panel("Generation served per named endpoint vs newest plan",
              "The plan generation behind each named endpoint's answer (0: empty answer) "
              "against the newest plan the planner wrote.",
              (Query("max(dnsrace_planner_newest_generation)", "newest plan"),
               Query("max by (endpoint) (dnsrace_dns_generation_served)",
                     "served: {{endpoint}}"))),
    ]),
    Row("Enactors ($az)", [
        Panel("Enactor plans: checked and applied to the regional name",
              "The plan each enactor passed its one-time staleness check with, and the one it "
              "last made the regional alias name: a stalled enactor flips it back.",
              (Query(f"max by (az) (dnsrace_enactor_checked_generation{{{AZ}}})",
                     "checked: {{az}}"),
               Query(f'max by (az) (dnsrace_enactor_applied_generation{{{AZ}, '
                     f'endpoint="regional"}})', "applied: {{az}}"),
               Query("max(dnsrace_planner_newest_generation)", "newest plan"))),
        Panel("Enactor apply latency",
              "Time to walk one plan over every endpoint, p50 and p99 per AZ.",
              (Query("histogram_quantile(0.5, sum by (az, le) (rate("
                     f"dnsrace_enactor_apply_seconds_bucket{{{AZ}}}{RATE})))", "p50 {{az}}"),
               Query("histogram_quantile(0.99, sum by (az, le) (rate("
                     f"dnsrace_enactor_apply_seconds_bucket{{{AZ}}}{RATE})))", "p99 {{az}}")),
              unit="s"),
        Panel("Lock losses",
              "Endpoint locks an enactor found held (it backed off) per second, by AZ.",
              (Query(f'sum by (az) (rate(dnsrace_enactor_locks_total{{outcome="lost", {AZ}}}'
                     f"{RATE}))", "{{az}}"),),
              unit="ops", width=8),
        Panel("Rejected batches by reason",
              "Change batches the zone refused per second, by reason (after the race: "
              "alias_target_missing, the automation stuck); plan validation refusals.",
              (Query(f"sum by (reason) (rate(dnsrace_enactor_batches_rejected_total{{{AZ}}}"
                     f"{RATE}))", "{{reason}}"),
               Query(f"sum by (reason) (rate(dnsrace_enactor_plans_refused_total{{{AZ}}}"
                     f"{RATE}))", "refused: {{reason}}")),
              unit="ops", width=8),
        Panel("Clean-up deletions",
              "Trees deleted by clean-up per second; live=true: an alias still named the tree.",
              (Query(f"sum by (az, live) (rate(dnsrace_enactor_trees_deleted_total{{{AZ}}}"
                     f"{RATE}))", "{{az}} live={{live}}"),),
              unit="ops", width=8),
    ]),
    Row("EC2: droplet leases and launches (the cascade)", [
        Panel("DWFM leases held by AZ",
              "Droplet leases the DWFM hosts hold, by AZ: they run out while the regional "
              "name is empty, and in legacy stay lost after the repair (congestive collapse).",
              (Query(f"sum by (az) (dnsrace_dwfm_leases_held{{{AZ}}})", "{{az}}"),),
              width=8, stacked=True),
        Panel("DWFM lease work: queue, goodput, void work",
              "Lease work items waiting, leases established per second (goodput), and work "
              "finished after its deadline per second (void: the collapse's wasted work).",
              (Query("sum(dnsrace_dwfm_queue_depth)", "waiting"),
               Query("sum(dnsrace_dwfm_goodput)", "goodput /s"),
               Query(f"sum(rate(dnsrace_dwfm_work_expired_total{RATE}))", "void /s")),
              width=8),
        Panel("Instance launches by outcome",
              "RunInstances calls per second by outcome: insufficient_capacity while no "
              "droplet has a lease, request_limit_exceeded while throttled.",
              (Query(f"sum by (outcome) (rate(dnsrace_ec2_launches_total{RATE}))",
                     "{{outcome}}"),),
              unit="ops", width=8, stacked=True),
    ]),
    Row("Network state and NLB (the cascade, part 2)", [
        Panel("Network Manager: propagation backlog",
              "Launched instances waiting for their network state, and propagations finished "
              "per second (Network Manager's finite throughput).",
              (Query("sum(dnsrace_netmgr_backlog)", "waiting"),
               Query(f"sum(rate(dnsrace_netmgr_propagated_total{RATE}))", "propagated /s")),
              width=8, needs=("netmgr",)),
        Panel("Oldest wait for network state",
              "How long the oldest waiting instance has run without connectivity.",
              (Query("max(dnsrace_netmgr_oldest_wait_seconds)", "oldest wait"),),
              unit="s", width=8, needs=("netmgr",)),
        Panel("Instances without connectivity",
              "Launched instances whose network state has not propagated, by AZ; and the "
              "targets the NLB put in service before theirs had (C2).",
              (Query(f"sum by (az) (dnsrace_instances_without_connectivity{{{AZ}}})",
                     "{{az}}"),
               Query("sum(dnsrace_nlb_in_service_without_connectivity_total)",
                     "in service without connectivity (C2)")),
              width=8, needs=("instances_az1", "instances_az2", "instances_az4", "nlb")),
        Panel("NLB targets in service by AZ",
              "Targets the NLB's health checker holds in service, by AZ: checks of instances "
              "without connectivity flap.",
              (Query(f"sum by (az) (dnsrace_nlb_targets_healthy{{{AZ}}})", "{{az}}"),),
              width=8, stacked=True, needs=("nlb",)),
        Panel("NLB name's AZ records",
              "A records (one per AZ node) the NLB's DNS name holds; AZs automatic failover "
              "removed within the velocity window, against the velocity limit (C3).",
              (Query("max(dnsrace_nlb_name_az_records)", "AZ records"),
               Query("max(dnsrace_nlb_azs_removed_in_window)", "removed in window"),
               Query("max(dnsrace_nlb_velocity_limit)", "velocity limit")),
              width=8, needs=("nlb",)),
        Panel("Service success ratio",
              "Share of the calls to the service behind the NLB (resolved through our DNS) "
              "that succeeded.",
              (Query(f'sum(rate(dnsrace_service_requests_total{{outcome="ok"}}{RATE})) / '
                     f"sum(rate(dnsrace_service_requests_total{RATE}))", "ok"),),
              unit="percentunit", width=8, max_value=1.0, needs=("service_load", "nlb")),
    ]),
    Row("Faults", [
        Panel("Active faults",
              "1 while a fault of this type and target is active (also shown as annotations).",
              (Query("max by (type, target) (dnsrace_fault_active)", "{{type}} {{target}}"),),
              kind="state-timeline", width=24, height=6),
    ]),
    Row("Client fleet", [
        Panel("Share of the client fleet failing",
              "Virtual clients whose last request failed, as a share of the fleet (every load "
              "generator): it ramps up as the clients' and the resolver's caches let the empty "
              "answer through, and down after the repair as their negative caching expires.",
              (Query("sum(dnsrace_client_fleet_failing) / sum(dnsrace_client_fleet_clients)",
                     "failing share"),),
              unit="percentunit", max_value=1.0, width=24, height=6),
    ]),
]


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, "min": 0}
    if panel.max_value is not None:
        defaults["max"] = panel.max_value
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
        }
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    legend = {"displayMode": "list", "placement": "bottom", "showLegend": True}
    if panel.kind == "timeseries":
        return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}
    return {"legend": legend, "tooltip": {"mode": "single", "sort": "none"},
            "showValue": "never", "mergeValues": True, "rowHeight": 0.9}


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [{"datasource": dict(DATASOURCE), "refId": chr(ord("A") + i), "expr": q.expr,
                "legendFormat": q.legend, "range": True, "instant": False,
                "editorMode": "code"}
               for i, q in enumerate(panel.queries)]
    return {
        "id": panel_id, "type": panel.kind, "title": panel.title,
        "description": panel.description, "datasource": dict(DATASOURCE),
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": _field_config(panel), "options": _options(panel), "targets": targets,
    }


def _panels() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    y = 0
    for row in ROWS:
        out.append({"id": len(out) + 1, "type": "row", "title": row.title, "collapsed": False,
                    "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        y += 1
        x, row_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            out.append(_panel(panel, len(out) + 1, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return out


def _az_variable() -> dict[str, Any]:
    query = "label_values(dnsrace_enactor_plans_applied_total, az)"
    return {
        "name": "az", "label": "AZ", "type": "query", "datasource": dict(DATASOURCE),
        "query": {"query": query, "refId": "az"}, "definition": query,
        "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [], "hide": 0, "regex": "",
    }


def _annotations() -> list[dict[str, Any]]:
    return [
        {"builtIn": 1, "name": "Annotations & Alerts", "type": "dashboard", "enable": True,
         "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
         "datasource": {"type": "grafana", "uid": "-- Grafana --"},
         "target": {"limit": 100, "matchAny": False, "tags": [], "type": "dashboard"}},
        {"name": "Faults", "enable": True, "hide": False, "iconColor": "red",
         "datasource": dict(DATASOURCE), "expr": FAULT_ANNOTATION, "step": "1s",
         "titleFormat": "fault {{type}} on {{target}}", "textFormat": "",
         "tagKeys": "type,target", "useValueForTime": False},
    ]


def build() -> dict[str, Any]:
    """The dashboard JSON model, as Grafana's file provider loads it."""
    return {
        "id": None, "uid": DASHBOARD_UID,
        "title": "dnsrace: the DynamoDB DNS race, live",
        "description": "The October 2025 DynamoDB DNS race reproduced on a local cluster: "
                       "what clients see, what DNS answers, what the enactors do, and faults.",
        "tags": ["dnsrace"], "timezone": "browser", "editable": True, "graphTooltip": 1,
        "time": {"from": "now-5m", "to": "now"}, "refresh": "1s", "liveNow": False,
        "timepicker": {"refresh_intervals": ["1s", "2s", "5s", "10s", "30s", "1m"]},
        "schemaVersion": SCHEMA_VERSION, "version": 1, "links": [],
        "templating": {"list": [_az_variable()]},
        "annotations": {"list": _annotations()},
        "panels": _panels(),
    }


def datasource_provisioning(url: str = PROMETHEUS_URL) -> dict[str, Any]:
    """Grafana's datasource provisioning file: the Prometheus the dashboard names by uid."""
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": DATASOURCE_NAME, "uid": DATASOURCE_UID, "type": "prometheus",
            "access": "proxy", "url": url, "isDefault": True, "editable": False,
            "jsonData": {"timeInterval": "1s", "httpMethod": "POST"},
        }],
    }


def dashboard_provisioning() -> dict[str, Any]:
    """Grafana's dashboard provider: load every JSON file under ``DASHBOARDS_PATH``."""
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "dnsrace", "folder": "dnsrace", "type": "file",
            "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 10,
            "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
        }],
    }


def panel_needs() -> dict[str, tuple[str, ...]]:
    """Panel title -> the processes it needs besides the race cluster's (panels that need
    none are left out)."""
    return {p.title: p.needs for row in ROWS for p in row.panels if p.needs}


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of every panel."""
    return [(p["title"], t["refId"], t["expr"]) for p in dashboard["panels"]
            for t in p.get("targets", [])]


def expand(expr: str, rate_interval: str = "4s", az: str = ".*") -> str:
    """A panel query as Grafana sends it with the ``az`` variable on All.

    ``$__rate_interval`` is max(interval + scrape interval, 4 x scrape interval): with the
    datasource's 1 s scrape interval and a few minutes on screen, 4 s.
    """
    return (expr.replace("$__rate_interval", rate_interval).replace("$__interval", "1s")
            .replace("$az", az))
