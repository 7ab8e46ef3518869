"""Every metric of every dnsrace process, read from each process's own metric registry.

The table in ``docs/metrics.md`` is generated from here (each role imported in a process of its
own), and a test checks it against what every process of a running cluster serves.
"""

from __future__ import annotations

import functools
import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY
from prometheus_client.metrics import MetricWrapperBase

REPO = Path(__file__).resolve().parent.parent

ENACTORS = ("enactor_az1", "enactor_az2", "enactor_az4")
DWFM_HOSTS = ("dwfm_1", "dwfm_2")
EVERY_PROCESS = ("planner", *ENACTORS, "dns", "endpoints", "control", "loadgen", *DWFM_HOSTS,
                 "ec2_api", "resolver")
ROLES: dict[str, tuple[str, ...]] = {
    "planner": ("planner",), "enactor": ENACTORS, "dns": ("dns",),
    "endpoints": ("endpoints",), "control": ("control",), "loadgen": ("loadgen",),
    "dwfm": DWFM_HOSTS, "ec2-api": ("ec2_api",), "resolver": ("resolver",),
    "up": ("supervisor",), "netmgr": ("netmgr",),
    "instances": ("instances_az1", "instances_az2", "instances_az4"), "nlb": ("nlb",),
    "service-load": ("service_load",),
}
"""Each ``dnsrace <role>`` command and the Procfile processes that run it; ``dnsrace up`` is
the supervisor itself, which serves its own metrics beside the cluster's processes."""
ROLE_MODULES = {
    "planner": "services.planner.service", "enactor": "services.enactor.service",
    "dns": "dns_server.server", "endpoints": "services.fleet.endpoints",
    "control": "services.control.service",
    "loadgen": "loadgen.__main__", "dwfm": "services.ec2.host",
    "ec2-api": "services.ec2.api", "resolver": "services.runtime.resolver_service",
    "up": "services.tools.up", "netmgr": "services.ec2.netmgr",
    "instances": "services.ec2.instances", "nlb": "services.nlb.service",
    "service-load": "loadgen.service_load",
}
"""The module each ``dnsrace <role>`` command runs (besides services.tools.cli and runtime)."""
DECLARED_ONLY = {"control": "dnsrace_enactor_"}
"""Families a process declares but never records: control imports services.enactor.enactor only for
a constant, so it serves the enactor families' HELP and TYPE lines without samples."""

LABELS: dict[str, str] = {
    "az": "Availability Zone of an enactor or a droplet: use1-az1, use1-az2, use1-az4",
    "mode": "enactor algorithm of the cluster: legacy or safe",
    "role": "what the process does: planner, enactor, dns, endpoints, control, loadgen, dwfm, "
            "netmgr, instances, nlb, service-load",
    "version": "dnsrace version",
    "outcome": "how something ended: a client outcome (ok, dns_nodata, dns_nxdomain, "
               "dns_timeout, dns_servfail, connect_error, http_error, timeout), a lock "
               "attempt (won, lost), a control request (ok, rejected, error), DWFM lease work "
               "(leased, void, failed, dropped), an admission (admitted, already_queued, "
               "throttled), a renewal (ok, failed), a launch (ok, insufficient_capacity, "
               "request_limit_exceeded, error, connect_error, timeout), a placement (placed, "
               "no_capacity)",
    "reason": "why: a rejected change batch (alias_target_missing, delete_mismatch, ...), a "
              "refused plan, a planner, DNS or sync error; a fixed set per metric",
    "rcode": "DNS response code name: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, FORMERR, ...",
    "qtype": "DNS question type: A, AAAA, TXT, SOA, NS or other",
    "endpoint": "a named endpoint: regional, fips, dualstack; every account cell is cell",
    "kind": "what a committed batch did: flip (an endpoint's alias) or cleanup (a tree)",
    "live": "true when clean-up deleted a tree an alias still named",
    "type": "fault type: enactor_stall, lock_delay, enactor_pause, lb_health",
    "target": "fault target: all, an AZ, or a load balancer's name (lb-1 ..)",
    "why": "how a fault ended: removed, expired, reset; why the supervisor started a process "
           "again: crashed, fault (a process_kill or redis_restart held it down)",
    "process": "a Procfile process the supervisor runs: redis, planner, enactor_az1, ..., "
               "ec2_api",
    "operation": "DynamoDB operation a load balancer answered (GetItem, PutItem, ..., unknown)",
    "transport": "DNS transport of a client query: udp or tcp",
    "feed": "Redis change channel a process follows: faults, plans (enactor), lb_health "
            "(endpoints), zone (dns)",
    "where": "where a process caught and survived an error: fault_gate_read, "
             "enactor_register_pid (enactor), lb_health_read (endpoints), fault_expiry "
             "(control), zone_apex (dns)",
}
"""Every label a dnsrace metric may carry: bounded sets only (never IPs or generations)."""


@dataclass(frozen=True)
class MetricInfo:
    name: str
    """The family name as exposed (counters with ``_total``, info with ``_info``)."""
    type: str
    labels: tuple[str, ...]
    help: str
    processes: tuple[str, ...]


def _exposed(name: str, kind: str) -> tuple[str, str]:
    if kind == "counter":
        return name + "_total", kind
    if kind == "info":
        return name + "_info", "gauge"
    return name, kind


def registry(role: str) -> list[dict[str, Any]]:
    """The dnsrace metrics in the registry of a ``dnsrace <role>`` process, in this process.

    Imports what the process imports; call it in a process of its own (:func:`catalog` does).
    """
    for entry in ("services.tools.cli", "services.runtime.service", ROLE_MODULES[role]):
        importlib.import_module(entry)
    # prometheus_client has no public accessor for a parent's label names: find each family's
    # metric object among the loaded modules' globals and read them from it.
    labels: dict[str, tuple[str, ...]] = {}
    for module in list(sys.modules.values()):
        for value in list(vars(module).values()) if module is not None else ():
            if isinstance(value, MetricWrapperBase):
                family = next(iter(value.describe()))
                labels[family.name] = tuple(getattr(value, "_labelnames", ()))
    out = []
    for family in REGISTRY.collect():
        if not family.name.startswith("dnsrace_"):
            continue
        if family.name not in labels:
            raise LookupError(f"{family.name} is not a module-level metric object")
        names = labels[family.name] or (("role", "version", "mode")
                                        if family.type == "info" else ())
        name, kind = _exposed(family.name, family.type)
        out.append({"name": name, "type": kind, "labels": names,
                    "help": family.documentation})
    return out


@functools.cache
def catalog() -> tuple[MetricInfo, ...]:
    """Every dnsrace metric of every process, read from each role's own registry."""
    code = "import json, sys; from dashboards.catalog import registry; " \
           "print(json.dumps(registry(sys.argv[1])))"
    children = {role: subprocess.Popen([sys.executable, "-c", code, role], cwd=REPO,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for role in ROLES}
    found: dict[str, dict[str, Any]] = {}
    served: dict[str, list[str]] = {}
    for role, child in children.items():
        out, err = child.communicate(timeout=60)
        if child.returncode != 0:
            raise RuntimeError(f"reading the registry of {role} failed: {err.decode()}")
        for metric in json.loads(out):
            found.setdefault(metric["name"], metric)
            skip = DECLARED_ONLY.get(role)
            if skip is None or not metric["name"].startswith(skip):
                served.setdefault(metric["name"], []).extend(ROLES[role])
    return tuple(
        MetricInfo(m["name"], m["type"], tuple(m["labels"]), m["help"],
                   tuple(p for p in EVERY_PROCESS if p in served.get(name, ()))
                   or tuple(served.get(name, ())))
        for name, m in found.items())


def standard_metrics() -> list[tuple[str, str, str]]:
    """(name, type, help) of the client library's own metrics, served by every process."""
    rows = []
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        for family in collector.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            rows.append((name, family.type, family.documentation))
    return sorted(set(rows))


def _processes(processes: tuple[str, ...]) -> str:
    if processes == EVERY_PROCESS:
        return "every process"
    if processes == ENACTORS:
        return "enactor_*"
    return ", ".join("enactor_*" if p == ENACTORS[0] else p for p in processes
                     if p not in ENACTORS[1:])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The whole of ``docs/metrics.md``."""
    lines = [
        "# Metrics",
        "",
        "<!-- Generated by `python -m dashboards.generate` from the metric definitions "
        "(dashboards/catalog.py); do not edit by hand. -->",
        "",
        "Every dnsrace process serves Prometheus text on `/metrics` (ports: `dnsrace config`, "
        "`DNSRACE_METRICS_PORT_BASE`; the control service on its own port). Names follow "
        "Prometheus practice: prefix `dnsrace_`, base units (`_seconds`), counters end "
        "`_total`, latencies are histograms (`_bucket`, `_sum`, `_count`), and labels take "
        "a small fixed set of values (never IPs, generations or request ids). A labelled "
        "counter is created at zero for every known label value when its process starts.",
        "",
        "| metric | type | labels | served by | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for m in catalog():
        labels = ", ".join(f"`{label}`" for label in m.labels) or "-"
        lines.append(f"| `{m.name}` | {m.type} | {labels} | {_processes(m.processes)} | "
                     f"{_cell(m.help)} |")
    lines += ["", "## Labels", "", "| label | values |", "| --- | --- |"]
    lines += [f"| `{label}` | {_cell(text)} |" for label, text in LABELS.items()]
    lines += [
        "",
        "## Standard process metrics",
        "",
        "Served by every process as well, from the Prometheus client library:",
        "",
        "| metric | type | meaning |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{n}` | {t} | {_cell(h)} |" for n, t, h in standard_metrics()]
    return "\n".join(lines) + "\n"
