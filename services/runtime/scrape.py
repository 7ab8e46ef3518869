"""Read the cluster's numbers straight from every process's ``/metrics`` (no Prometheus needed).

Used by the demo's live view, ``dnsrace watch`` and the whole-cluster tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from services.config import Settings
from services.core.names import AZS
from services.runtime.load_split import loadgen_count

Labels = frozenset[tuple[str, str]]


@dataclass
class Samples:
    """Every sample of one scrape: (metric name, labels) -> value."""

    values: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def sum(self, name: str, **match: str) -> float:
        wanted = set(match.items())
        return sum(v for (n, labels), v in self.values.items()
                   if n == name and wanted <= labels)

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        wanted = set(match.items())
        out: dict[str, float] = {}
        for (n, labels), v in self.values.items():
            if n == name and wanted <= labels:
                key = dict(labels).get(label, "")
                out[key] = out.get(key, 0.0) + v
        return out

    def merge(self, other: Samples) -> None:
        for key, value in other.values.items():
            self.values[key] = self.values.get(key, 0.0) + value


def parse(text: str) -> Samples:
    samples = Samples()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            samples.values[key] = samples.values.get(key, 0.0) + s.value
    return samples


def metrics_urls(settings: Settings, loadgens: int | None = None) -> dict[str, str]:
    """Where every process of the cluster serves /metrics, by process name; ``loadgens``
    load generators (None: as many as the cluster starts for the rate)."""
    if loadgens is None:
        loadgens = loadgen_count(settings)
    base = "http://127.0.0.1:{}/metrics"
    urls = {
        "planner": base.format(settings.metrics_port("planner")),
        "dns": base.format(settings.metrics_port("dns")),
        "endpoints": base.format(settings.metrics_port("endpoints")),
        "control": base.format(settings.control_port),
    }
    for i, az in enumerate(AZS):
        urls[f"enactor_{az.removeprefix('use1-')}"] = base.format(
            settings.metrics_port("enactor", i))
    for i in range(settings.dwfm_hosts):
        urls[f"dwfm_{i + 1}"] = base.format(settings.metrics_port("dwfm", i))
    urls["ec2_api"] = base.format(settings.metrics_port("ec2_api"))
    urls["resolver"] = base.format(settings.metrics_port("resolver"))
    for i in range(loadgens):
        urls[f"loadgen.{i + 1}"] = base.format(settings.metrics_port("loadgen", i))
    return urls


NETWORK_PROCESSES = ("netmgr", "nlb", "instances_az1", "instances_az2", "instances_az4",
                     "service_load")
"""Issue 15's processes (Network Manager, the NLB, the instances, the NLB's clients): not part
of the race-only cluster, so read apart from :func:`metrics_urls`."""


def network_metrics_urls(settings: Settings) -> dict[str, str]:
    """Where each of :data:`NETWORK_PROCESSES` serves /metrics, by process name."""
    base = "http://127.0.0.1:{}/metrics"
    urls = {"netmgr": base.format(settings.metrics_port("netmgr")),
            "nlb": base.format(settings.metrics_port("nlb"))}
    for i, az in enumerate(AZS):
        urls[f"instances_{az.removeprefix('use1-')}"] = base.format(
            settings.metrics_port("instances", i))
    urls["service_load"] = base.format(settings.metrics_port("service_load"))
    return urls


async def scrape(session: aiohttp.ClientSession, urls: Iterable[str],
                 timeout_s: float = 1.0) -> Samples:
    """One scrape of every URL, merged; a process that does not answer adds nothing."""

    async def one(url: str) -> Samples:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
                return parse(await r.text()) if r.status == 200 else Samples()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return Samples()

    merged = Samples()
    for part in await asyncio.gather(*(one(u) for u in urls)):
        merged.merge(part)
    return merged
