"""``dnsrace demo --containers``: the demo on containers, seen by ``dig`` inside an AZ.

The demo itself is :func:`services.tools.demo.run_demo` with a :class:`ContainerCluster` per
mode; beside it, :class:`DigWatch` runs ``dig`` inside the AZ-1 enactor's container (through
its resolv.conf, so through our DNS server on the AZ's network) all along, and prints every
change of what it sees: the addresses, the empty answer of the race, the addresses again after
the repair. The demo succeeds only if that container saw it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from services.config import Mode, Settings
from services.containers.cluster import ContainerCluster
from services.containers.engine import Engine, EngineError, detect
from services.core import names
from services.runtime.cluster import Cluster
from services.tools.demo import run_demo

Seen = Literal["answers", "empty", "no answer"]
WATCHED = "enactor_az1"
POLL_S = 0.5
STATUS = re.compile(r"status: ([A-Z]+)")


def classify(output: str) -> tuple[Seen, str]:
    """What one ``dig +noall +comments +answer`` printed: addresses, an empty NOERROR, or no
    usable answer (timeout, SERVFAIL ...), with a short description."""
    status = STATUS.search(output)
    addresses = [line.split()[-1] for line in output.splitlines()
                 if line and not line.startswith(";") and line.split()[3:4] == ["A"]]
    if status is None or status.group(1) != "NOERROR":
        return "no answer", (f"status {status.group(1)}" if status else "no reply")
    if not addresses:
        return "empty", "NOERROR with no address (the empty name)"
    return "answers", f"{len(addresses)} address(es), e.g. {addresses[0]}"


def repaired_after_empty(seen: list[Seen]) -> bool:
    """Addresses, then the empty answer, then addresses again: the race and the repair."""
    try:
        first = seen.index("answers")
        empty = seen.index("empty", first)
        return "answers" in seen[empty:]
    except ValueError:
        return False


@dataclass
class DigWatch:
    engine: Engine
    container: str = WATCHED
    seen: dict[str, list[Seen]] = field(default_factory=dict)

    def dig(self) -> tuple[Seen, str]:
        command = self.engine.exec_args(self.container, "dig", "+tries=1", "+time=2",
                                        "+noall", "+comments", "+answer", names.REGIONAL + ".",
                                        "A")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return "no answer", "dig took over 10 s"
        return classify(done.stdout)

    @contextlib.asynccontextmanager
    async def watching(self, settings: Settings) -> AsyncIterator[DigWatch]:
        seen = self.seen.setdefault(settings.mode, [])
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set():
                state, detail = await asyncio.to_thread(self.dig)
                if not seen or seen[-1] != state:
                    seen.append(state)
                    print(f"   [{settings.mode}] dig {names.REGIONAL} inside "
                          f"dnsrace-{self.container} (its resolv.conf): {detail}", flush=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)

        task = asyncio.create_task(poll())
        try:
            yield self
        finally:
            stop.set()
            await task


def run_container_demo(settings: Settings, rate: float, modes: tuple[Mode, ...], image: str,
                       engine: str | None, workdir: Path | None = None) -> int:
    try:
        chosen = Engine(detect(engine))
    except EngineError as e:
        print(f"dnsrace demo: {e}", file=sys.stderr)
        return 1
    if (problem := chosen.image_problem(image)) is not None:
        print(f"dnsrace demo: {problem}", file=sys.stderr)
        return 1
    watch = DigWatch(chosen)

    def make_cluster(mode_settings: Settings, log_dir: Path) -> Cluster:
        return ContainerCluster.create(mode_settings, log_dir, image, chosen.kind)

    code = run_demo(settings, rate, modes, workdir, make_cluster, watch.watching)
    legacy = watch.seen.get("legacy", [])
    safe = watch.seen.get("safe", [])
    print(f"\ndig inside dnsrace-{WATCHED}: legacy {' -> '.join(legacy) or 'nothing'}"
          + (f"; safe {' -> '.join(safe) or 'nothing'}" if "safe" in modes else ""))
    seen_ok = repaired_after_empty(legacy) and "empty" not in safe
    if not seen_ok:
        print("!! the AZ-1 enactor's container did not see the empty answer and the repair"
              if "legacy" in modes else "!! the safe run's container saw an empty answer")
    return code if seen_ok else 1
