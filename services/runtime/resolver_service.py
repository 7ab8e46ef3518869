"""The ``resolver`` process: Unbound between the clients and our DNS server, its statistics in
our metrics.  With ``DNSRACE_RESOLVER=stub`` (the default) it only answers /healthz: each
client resolves straight against our server through its own stub cache.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from prometheus_client import Gauge

from services.runtime.service import ServiceContext, observability_app, start_site
from services.runtime.unbound import Unbound, UnboundConfig, UnboundError

log = logging.getLogger(__name__)

SCRAPE_INTERVAL_S = 0.5
CACHE_HITS = Gauge("dnsrace_resolver_cache_hits",
                   "Queries Unbound answered from its cache (total.num.cachehits)")
QUERIES = Gauge("dnsrace_resolver_queries", "Queries Unbound received (total.num.queries)")
NODATA = Gauge("dnsrace_resolver_nodata_answers",
               "Answers Unbound gave with NOERROR and no address (num.answer.rcode.nodata)")
NODATA_FROM_CACHE = Gauge(
    "dnsrace_resolver_nodata_from_cache",
    "Empty answers Unbound served from its cache: the NODATA answers that did not reach our "
    "server (nodata answers minus cache misses that were empty, estimated from the two)")
_SCRAPED = {"total.num.cachehits": CACHE_HITS, "total.num.queries": QUERIES,
            "num.answer.rcode.nodata": NODATA}


def unbound_config(ctx: ServiceContext) -> UnboundConfig:
    s = ctx.settings
    return UnboundConfig(s.resolver_port, s.resolver_port + 1, s.dns_host, s.dns_port,
                         Path(s.state_dir) / "unbound")


async def scrape(unbound: Unbound, stop: asyncio.Event) -> None:
    """Copy Unbound's counters into our gauges until ``stop``; a failed read is logged."""
    nodata_misses = 0.0
    last_nodata = last_misses = 0.0
    while not stop.is_set():
        try:
            stats = await unbound.stats()
        except UnboundError as e:
            log.warning("no statistics from unbound: %s", e)
        else:
            for key, gauge in _SCRAPED.items():
                gauge.set(stats.get(key, 0.0))
            nodata = stats.get("num.answer.rcode.nodata", 0.0)
            misses = stats.get("total.num.cachemiss", 0.0)
            # an interval's new empty answers beyond its cache misses came from the cache
            nodata_misses += min(nodata - last_nodata, misses - last_misses)
            last_nodata, last_misses = nodata, misses
            NODATA_FROM_CACHE.set(max(0.0, nodata - nodata_misses))
        try:
            async with asyncio.timeout(SCRAPE_INTERVAL_S):
                await stop.wait()
        except TimeoutError:
            pass


async def serve(ctx: ServiceContext) -> None:
    settings = ctx.settings
    site = await start_site(observability_app(ctx), "127.0.0.1",
                            settings.metrics_port("resolver"))
    try:
        if settings.resolver != "unbound":
            ctx.ready = True
            await ctx.stopping.wait()
            return
        async with Unbound(unbound_config(ctx)) as unbound:
            log.info("unbound on 127.0.0.1:%d, authority %s:%d", settings.resolver_port,
                     settings.dns_host, settings.dns_port)
            ctx.ready = True
            await scrape(unbound, ctx.stopping)
    finally:
        ctx.ready = False
        await site.cleanup()
