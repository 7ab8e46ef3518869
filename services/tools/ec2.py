"""``dnsrace ec2``: what DWFM's hosts hold, queue and establish (from their /metrics).

What the operators looked at on the morning of 20 October 2025: leases held per AZ and host,
the queue of lease work, the rate at which leases are established (goodput), and whether new
work is throttled; and what they did at 4:14 AM: throttle incoming work, restart hosts; and,
while the network-state backlog drained, limit new launches at ec2_api (``launches``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict, dataclass

import aiohttp

from services.config import Settings
from services.core.names import AZS
from services.errors import DnsraceError
from services.runtime.scrape import Samples, metrics_urls, scrape


class Ec2Error(DnsraceError, RuntimeError):
    pass


class Ec2UsageError(Ec2Error, ValueError):
    """A bad argument: the message says how to write it."""


@dataclass(frozen=True)
class HostStatus:
    host: str
    leases_held: dict[str, int]
    droplets: int
    queue_depth: int
    goodput_per_s: float
    admission_limit: int | None
    """Waiting items beyond which new work is refused; None: not throttled (legacy)."""
    throttled_total: int
    void_total: int
    operator_throttle_per_s: float | None = None
    """The operators' rate limit on admitted work; None: off."""
    oldest_age_s: float = 0.0
    """How long the oldest waiting item has waited (0: the queue is empty)."""

    @property
    def held(self) -> int:
        return sum(self.leases_held.values())


def host_status(host: str, samples: Samples) -> HostStatus:
    limit = int(samples.sum("dnsrace_dwfm_admission_limit"))
    operator = samples.sum("dnsrace_dwfm_operator_throttle")
    return HostStatus(
        host=host,
        leases_held={az: int(v) for az, v in sorted(
            samples.by("dnsrace_dwfm_leases_held", "az").items())},
        droplets=int(samples.sum("dnsrace_dwfm_droplets")),
        queue_depth=int(samples.sum("dnsrace_dwfm_queue_depth")),
        goodput_per_s=samples.sum("dnsrace_dwfm_goodput"),
        admission_limit=limit or None,
        throttled_total=int(samples.sum("dnsrace_dwfm_admissions_total", outcome="throttled")),
        void_total=int(samples.sum("dnsrace_dwfm_work_expired_total")),
        operator_throttle_per_s=operator or None,
        oldest_age_s=round(samples.sum("dnsrace_dwfm_oldest_work_age_seconds"), 3))


async def collect(settings: Settings) -> list[HostStatus]:
    """Every DWFM host's status; Ec2Error if none answers."""
    urls = {name: url for name, url in metrics_urls(settings).items()
            if name.startswith("dwfm_")}
    async with aiohttp.ClientSession() as session:
        scraped = await asyncio.gather(*(scrape(session, [u]) for u in urls.values()))
    hosts = [host_status(name, samples) for name, samples in zip(urls, scraped, strict=True)
             if samples.values]
    if not hosts:
        raise Ec2Error(f"no DWFM host answers on {', '.join(urls.values())}: start the cluster "
                       "('dnsrace up'), or set DNSRACE_METRICS_PORT_BASE to the cluster's")
    return hosts


def format_status(hosts: list[HostStatus]) -> str:
    header = f"{'host':<8}" + "".join(f"{az:>11}" for az in AZS) + \
        f"{'held':>10}{'queue':>7}{'oldest':>8}{'goodput/s':>11}  throttle"
    lines = [header]
    for h in hosts:
        parts = [f"admit <= {h.admission_limit} waiting"] if h.admission_limit else []
        if h.operator_throttle_per_s:
            parts.append(f"operators: {h.operator_throttle_per_s:g}/s")
        throttle = (f"{', '.join(parts)}; {h.throttled_total} refused" if parts
                    else "off (every item admitted)")
        lines.append(f"{h.host:<8}" + "".join(f"{h.leases_held.get(az, 0):>11}" for az in AZS)
                     + f"{f'{h.held}/{h.droplets}':>10}{h.queue_depth:>7}"
                     + f"{f'{h.oldest_age_s:.1f}s':>8}"
                     + f"{h.goodput_per_s:>11.1f}  {throttle}")
    held, droplets = sum(h.held for h in hosts), sum(h.droplets for h in hosts)
    void = sum(h.void_total for h in hosts)
    lines.append(f"leases held {held} of {droplets}; void lease work so far {void}")
    return "\n".join(lines)


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    hosts = asyncio.run(collect(settings))
    if args.json:
        print(json.dumps([{**asdict(h), "held": h.held} for h in hosts], indent=2))
    else:
        print(format_status(hosts))
    return 0


def parse_rate(text: str, action: str = "throttle",
               unit: str = "items per second per host") -> float | None:
    if text == "off":
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0 or rate == float("inf"):
        raise Ec2UsageError(f"{action} takes a rate in {unit} (> 0) or 'off', not {text!r}; "
                            f"e.g. 'dnsrace ec2 {action} 5'")
    return rate


def parse_host(text: str, settings: Settings) -> int:
    number = text.removeprefix("dwfm_")
    if not number.isdigit() or not 1 <= int(number) <= settings.dwfm_hosts:
        raise Ec2UsageError(f"restart takes a DWFM host, 1 to {settings.dwfm_hosts} (or dwfm_1 "
                            f"...), not {text!r}; 'dnsrace ec2 status' lists them")
    return int(number)


async def post(settings: Settings, host: int, path: str, body: dict[str, object]
                ) -> dict[str, object]:
    url = f"http://127.0.0.1:{settings.metrics_port('dwfm', host - 1)}{path}"
    return await post_to(url, f"dwfm_{host}", body)


async def post_to(url: str, name: str, body: dict[str, object]) -> dict[str, object]:
    try:
        async with aiohttp.ClientSession() as session, session.post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=3)) as r:
            answer: dict[str, object] = await r.json()
            if r.status != 200:
                raise Ec2Error(f"{name} refused: {answer.get('error', r.status)}")
            return answer
    except (aiohttp.ClientError, TimeoutError) as e:
        raise Ec2Error(f"{name} is not reachable at {url} ({e or type(e).__name__}): "
                       "start the cluster ('dnsrace up')") from e


def throttle_command(args: argparse.Namespace, settings: Settings) -> int:
    rate = parse_rate(args.rate)

    async def main() -> list[dict[str, object]]:
        return list(await asyncio.gather(*(
            post(settings, host, "/ec2/throttle", {"rate": rate})
            for host in range(1, settings.dwfm_hosts + 1))))

    for answer in asyncio.run(main()):
        print(f"{answer['host']}: throttle "
              + (f"{answer['rate']:g} items/s" if answer["rate"] else "off"))
    return 0


def launches_command(args: argparse.Namespace, settings: Settings) -> int:
    """What the operators did to launches: ec2_api refuses beyond RATE a second
    (RequestLimitExceeded), or no longer limits them (off)."""
    rate = parse_rate(args.rate, "launches", "launches per second")
    url = f"http://127.0.0.1:{settings.metrics_port('ec2_api')}/ec2/throttle"
    answer = asyncio.run(post_to(url, "ec2_api", {"rate": rate}))
    limit = answer["rate"]
    print("ec2_api: " + (f"launches limited to {limit:g}/s (RequestLimitExceeded beyond)"
                         if isinstance(limit, (int, float)) and limit else
                         "launches not limited by the operators"))
    return 0


def restart_command(args: argparse.Namespace, settings: Settings) -> int:
    host = parse_host(args.host, settings)
    answer = asyncio.run(post(settings, host, "/ec2/restart", {}))
    print(f"{answer['host']} restarted: {answer['lost']} lease work item(s) lost (waiting and "
          f"in flight); the queue rebuilt from its droplets without a lease: "
          f"{answer['queued']} admitted now, the rest as admission allows")
    return 0
