"""``dnsrace watch``'s lines for the cascade: DWFM's leases and the launches (part 1); Network
Manager, the instances, the NLB and its clients (part 2). Each shown only when its processes
answer /metrics (a race-only cluster runs none of part 2).

Pure: a view built from two scrapes, and its text.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.names import AZS
from services.runtime.scrape import NETWORK_PROCESSES, Samples

INSTANCES = tuple(p for p in NETWORK_PROCESSES if p.startswith("instances_"))


@dataclass(frozen=True)
class Ec2View:
    leases_held: int
    droplets: int
    queue_depth: int
    oldest_age_s: float
    """The oldest waiting lease work item's age on the host where it is oldest."""
    goodput_per_s: float
    void_per_s: float
    """Lease work finished after its deadline, per second (the collapse's signature)."""
    launches_per_s: dict[str, float]
    """Launches answered per second, by outcome (ok, insufficient_capacity, ...)."""


@dataclass(frozen=True)
class NetmgrView:
    backlog: int
    oldest_wait_s: float
    propagated_per_s: float


@dataclass(frozen=True)
class NlbView:
    az_records: int
    healthy: dict[str, int]
    """Targets in service, by AZ."""
    removed_in_window: int
    velocity_limit: int
    in_service_without_connectivity: int
    """Targets put in service before their network state propagated, so far (C2)."""


@dataclass(frozen=True)
class ServiceView:
    calls_per_s: float
    ok_ratio: float | None


@dataclass(frozen=True)
class NetworkView:
    netmgr: NetmgrView | None = None
    without_connectivity: dict[str, int] | None = None
    """Launched instances without connectivity, by AZ (None: no instances process answers)."""
    nlb: NlbView | None = None
    service: ServiceView | None = None


def _answers(processes: dict[str, Samples], name: str) -> bool:
    return bool(processes.get(name, Samples()).values)


def _increase(cur: Samples, prev: Samples | None, name: str, **match: str) -> float:
    if prev is None:
        return 0.0
    return max(0.0, cur.sum(name, **match) - prev.sum(name, **match))


def ec2_view(processes: dict[str, Samples], cur: Samples, prev: Samples | None,
             span_s: float) -> Ec2View | None:
    """DWFM's hosts and the launches, or None when no DWFM host answers."""
    hosts = [samples for name, samples in processes.items()
             if name.startswith("dwfm_") and samples.values]
    if not hosts:
        return None

    def per_s(value: float) -> float:
        return value / span_s if span_s > 0 else 0.0

    launches = {outcome: per_s(_increase(cur, prev, "dnsrace_ec2_launches_total",
                                         outcome=outcome))
                for outcome in cur.by("dnsrace_ec2_launches_total", "outcome")}
    return Ec2View(
        leases_held=int(cur.sum("dnsrace_dwfm_leases_held")),
        droplets=int(cur.sum("dnsrace_dwfm_droplets")),
        queue_depth=int(cur.sum("dnsrace_dwfm_queue_depth")),
        oldest_age_s=max(h.sum("dnsrace_dwfm_oldest_work_age_seconds") for h in hosts),
        goodput_per_s=cur.sum("dnsrace_dwfm_goodput"),
        void_per_s=per_s(_increase(cur, prev, "dnsrace_dwfm_work_expired_total")),
        launches_per_s={k: v for k, v in launches.items() if v > 0})


def render_ec2(view: Ec2View | None) -> list[str]:
    """DWFM's lines (none when no DWFM host answers)."""
    if view is None:
        return []
    lost = "  <== LEASES LOST" if view.leases_held < view.droplets else ""
    void = "  <== WORK DONE TOO LATE" if view.void_per_s > 0 else ""
    launches = "  ".join(f"{k} {v:.1f}/s" for k, v in sorted(view.launches_per_s.items()))
    return [f"ec2 leases     {view.leases_held} of {view.droplets} droplets held{lost}; "
            f"goodput {view.goodput_per_s:.1f}/s",
            f"               lease work waiting {view.queue_depth} (oldest "
            f"{view.oldest_age_s:.1f} s); void {view.void_per_s:.1f}/s{void}",
            f"ec2 launches   {launches or 'none'}"]


def network_view(processes: dict[str, Samples], cur: Samples, prev: Samples | None,
                 span_s: float) -> NetworkView | None:
    """The view from the processes that answered (``cur``/``prev``: every process merged)."""
    if not any(_answers(processes, p) for p in NETWORK_PROCESSES):
        return None

    def per_s(value: float) -> float:
        return value / span_s if span_s > 0 else 0.0

    netmgr = without = nlb = service = None
    if _answers(processes, "netmgr"):
        netmgr = NetmgrView(
            backlog=int(cur.sum("dnsrace_netmgr_backlog")),
            oldest_wait_s=cur.sum("dnsrace_netmgr_oldest_wait_seconds"),
            propagated_per_s=per_s(_increase(cur, prev, "dnsrace_netmgr_propagated_total")))
    if any(_answers(processes, p) for p in INSTANCES):
        counts = cur.by("dnsrace_instances_without_connectivity", "az")
        without = {az: int(counts[az]) for az in AZS if az in counts}
    if _answers(processes, "nlb"):
        healthy = cur.by("dnsrace_nlb_targets_healthy", "az")
        nlb = NlbView(
            az_records=int(cur.sum("dnsrace_nlb_name_az_records")),
            healthy={az: int(healthy[az]) for az in AZS if az in healthy},
            removed_in_window=int(cur.sum("dnsrace_nlb_azs_removed_in_window")),
            velocity_limit=int(cur.sum("dnsrace_nlb_velocity_limit")),
            in_service_without_connectivity=int(
                cur.sum("dnsrace_nlb_in_service_without_connectivity_total")))
    if _answers(processes, "service_load"):
        calls = _increase(cur, prev, "dnsrace_service_requests_total")
        ok = _increase(cur, prev, "dnsrace_service_requests_total", outcome="ok")
        service = ServiceView(per_s(calls), ok / calls if calls > 0 else None)
    return NetworkView(netmgr, without, nlb, service)


def render_network(view: NetworkView | None) -> list[str]:
    """The view's lines (none when no process of the cascade's part 2 answers)."""
    if view is None:
        return []
    lines = []
    if view.netmgr is not None:
        n = view.netmgr
        lines.append(f"network state  {n.backlog} instances waiting for propagation (oldest "
                     f"{n.oldest_wait_s:.1f} s), {n.propagated_per_s:.0f} propagated/s")
    if view.without_connectivity is not None:
        counts = "  ".join(f"{az} {v}" for az, v in view.without_connectivity.items())
        total = sum(view.without_connectivity.values())
        lines.append(f"instances      without connectivity: {counts or '-'}"
                     + ("  <== NO CONNECTIVITY" if total else ""))
    if view.nlb is not None:
        b = view.nlb
        healthy = "  ".join(f"{az} {v}" for az, v in b.healthy.items()) or "-"
        removed = "  <== CAPACITY REMOVED" if b.az_records < len(AZS) else ""
        lines.append(f"nlb            name holds {b.az_records} of {len(AZS)} AZ records"
                     f"{removed}; in service: {healthy}")
        over = "  <== C3 BROKEN" if b.removed_in_window > b.velocity_limit else ""
        c2 = "  <== C2 BROKEN" if b.in_service_without_connectivity else ""
        lines.append(f"               failover removed {b.removed_in_window} AZs in the velocity "
                     f"window (limit {b.velocity_limit}){over}; put in service without "
                     f"connectivity {b.in_service_without_connectivity}{c2}")
    if view.service is not None:
        s = view.service
        ratio = "-" if s.ok_ratio is None else f"{s.ok_ratio:.1%}"
        lines.append(f"service        {s.calls_per_s:.0f} calls/s through the NLB's name, "
                     f"succeeding {ratio}")
    return lines
