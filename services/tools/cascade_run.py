"""The cascade's run: a sample a second of every stage's values and of the regional name, the
marks and the operators' actions on one timeline, and waits on conditions with deadlines.

:class:`Stage` is what a part of the cascade (DWFM; part 2's Network Manager and NLB) gives a
run: the processes it needs, its values in each scrape, its live line and its summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from loadgen.outcome import Outcome
from loadgen.resolver import StubResolver
from services.config import Settings
from services.core import cascade, events, names
from services.core.invariants import Violation
from services.errors import DnsraceError
from services.runtime.cluster import Cluster, ClusterError
from services.runtime.scrape import Samples, metrics_urls, scrape
from services.store import history
from services.tools.ec2 import Ec2Error
from services.tools.race import RaceError


class CascadeError(DnsraceError, RuntimeError):
    """A step of a cascade run failed (a process refused an operator's switch)."""


RUN_ERRORS = (ClusterError, RaceError, Ec2Error, CascadeError, aiohttp.ClientError)
"""What ends a run's script early and is reported among its problems, not raised: the cluster
not starting, the race, 'dnsrace ec2' or a switch failing, a process not answering HTTP."""


class Stage(Protocol):
    name: str

    @property
    def processes(self) -> tuple[str, ...]:
        """The Procfile processes this stage needs besides the DNS cluster."""
        ...

    @property
    def total(self) -> int:
        """What the stage counts recovery against (droplet leases for DWFM)."""
        ...

    def read(self, samples: Samples) -> dict[str, float]:
        """This stage's values in one scrape of every process."""
        ...

    def ready(self, sample: cascade.Sample) -> bool:
        """Healthy enough to start the race (every lease held ...)."""
        ...

    def live(self, sample: cascade.Sample) -> str: ...

    def summary(self, timeline: cascade.Timeline) -> dict[str, object]: ...



@dataclass
class Run:
    """One cascade run against a cluster that is up: samples a second, marks, actions."""

    settings: Settings
    stages: list[Stage]
    out: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    timeline: cascade.Timeline = field(default_factory=cascade.Timeline)
    violations: list[Violation] = field(default_factory=list)
    ec2_status: list[dict[str, Any]] = field(default_factory=list)
    """What 'dnsrace ec2 status --json' said at the end."""
    extra_urls: tuple[str, ...] = ()
    """/metrics of processes besides the cluster's usual ones (dnsrace outage's)."""
    waits_missed: list[str] = field(default_factory=list)
    """Each wait whose condition did not come in time (the run went on without it)."""

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def note(self, text: str) -> None:
        self.out(f"+{self.now():6.1f}s  {text}")

    async def sample(
        self, session: aiohttp.ClientSession, resolver: StubResolver
    ) -> cascade.Sample:
        urls = [*metrics_urls(self.settings).values(), *self.extra_urls]
        samples, answer = await asyncio.gather(
            scrape(session, urls), resolver.query(names.REGIONAL)
        )
        values: dict[str, float] = {}
        for stage in self.stages:
            values.update(stage.read(samples))
        answers = bool(answer.addresses)
        if answer.outcome not in (Outcome.OK, Outcome.DNS_NODATA, Outcome.DNS_NXDOMAIN):
            # No answer in time (a busy machine): the name is as it was a second ago.
            previous = self.timeline.samples[-1:]
            answers = previous[0].dns_answers if previous else answers
        return cascade.Sample(self.now(), answers, values)

    async def sampling(self, session: aiohttp.ClientSession, resolver: StubResolver) -> None:
        while True:
            sample = await self.sample(session, resolver)
            self.timeline.add(sample)
            dns = "answers" if sample.dns_answers else "EMPTY  "
            self.note(f"dns {dns}  " + "  ".join(s.live(sample) for s in self.stages))
            await asyncio.sleep(max(0.0, 1.0 - (self.now() - sample.t_s)))

    async def until(
        self, condition: Callable[[cascade.Sample], bool], timeout_s: float, what: str,
        *, watch: bool = False,
    ) -> float | None:
        """Seconds into the run of the first new sample meeting ``condition``; None if none
        came within ``timeout_s``: a missed wait, unless ``watch`` (a window watched to see
        whether the condition comes by itself, such as the operators' watch of a collapse)."""
        seen = len(self.timeline.samples)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for sample in self.timeline.samples[seen:]:
                if condition(sample):
                    return sample.t_s
            seen = len(self.timeline.samples)
            await asyncio.sleep(0.1)
        if watch:
            return None
        self.note(f"not within {timeout_s:.0f} s: {what}")
        self.waits_missed.append(f"{what} (not within {timeout_s:.0f} s)")
        return None

    async def act(
        self, sink: history.RedisHistory, action: str, target: str, detail: str = ""
    ) -> None:
        self.timeline.actions.append(cascade.Action(self.now(), action, target, detail))
        self.timeline.mark("operators" if action != "dns_repair" else "dns_repaired", self.now())
        await sink.record(events.OperatorAction(action=action, target=target, detail=detail))
        self.note(f"operators: {action} {target} {detail}".rstrip())


async def on_cluster(run: Run, cluster: Cluster, healthy_s: float,
                     script: Callable[[], Awaitable[None]]) -> list[str]:
    """Start ``cluster``, sample it every second while ``script`` runs, then stop it.

    The problems met, each also printed: an error of :data:`RUN_ERRORS` ends the script (the
    run's samples up to it stay), any other is raised after the cluster is stopped.
    """
    problems: list[str] = []
    resolver = StubResolver(run.settings.dns_host, run.settings.dns_port, timeout_s=0.5,
                            cache=False)
    try:
        cluster.start()
        await asyncio.to_thread(cluster.wait_healthy, healthy_s)
        run.note(f"cluster up ({', '.join(cluster.only or ())}); logs in {cluster.log_dir}")
        async with aiohttp.ClientSession() as session:
            sampler = asyncio.create_task(run.sampling(session, resolver))
            try:
                await script()
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
    except RUN_ERRORS as e:
        problems.append(str(e))
        run.out(f"!! {e}")
    finally:
        await resolver.aclose()
        cluster.stop()
    return problems
