"""Where our DNS server spends its time under dnsperf: py-spy samples, summed by frame.

    pip install py-spy   # anywhere; pass its path with --py-spy
    .venv/bin/python -m bench.profile_dns --py-spy /tmp/tools/bin/py-spy [--churn]

Starts the server on a zone of 1,003 endpoints, runs dnsperf (as fast as it answers, or at a
fixed rate with ``--rate``), records the server with ``py-spy --native`` meanwhile, and
prints the frames with the largest self and inclusive shares.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import dnsperf, servers, zonedata
from bench.churn import Churn
from bench.common import require

INTERESTING = ("UdpBatchServer._readable", "UdpBatchServer._one", "UdpBatchServer._answer",
               "UdpBatchServer._send", "UdpBatchServer._receive", "ReplyEngine.respond",
               "ReplyEngine._entry", "ReplyEngine._reply", "fast_parse", "ZoneSync._follow",
               "ZoneSync._apply", "AnswerSampler.sample", "encode_reply", "sendto", "__sendto",
               "recvfrom", "__libc_recvfrom", "sendmmsg", "recvmmsg", "epoll_pwait", "epoll_wait")


def summarize(folded: Path, top: int = 20) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        self_time[frames[-1]] += n
        for name in {frame.split(" (")[0] for frame in frames}:
            inclusive[name] += n
    lines = [f"{total} samples", "self:"]
    lines += [f"  {100 * n / total:5.1f} % {frame[:110]}" for frame, n in
              self_time.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {100 * inclusive[name] / total:5.1f} % {name}" for name in INTERESTING]
    return "\n".join(lines)


async def profile(py_spy: str, seconds: float, churn: bool, rate: float | None) -> str:
    root = Path(tempfile.mkdtemp(prefix="dnsrace-profile-"))
    async with zonedata.store(root, 1003, appendonly=True) as s:
        await zonedata.populate(s, 2)
        zone = await zonedata.export(s, root / "zone")
        ours = servers.start_ours(root, s.url)
        churning = Churn(s.url, 1000, root) if churn else None
        try:
            dnsperf.run("warm-up", ours.port, zone.query_file, 1)
            if churning is not None:
                churning.start().wait_churning()
            folded = root / "ours.folded"
            spy = subprocess.Popen([py_spy, "record", "--native", "-p", str(ours.pid), "-d",
                                    f"{seconds:g}", "-r", "200", "-f", "raw", "-o",
                                    str(folded)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            result = dnsperf.run("ours", ours.port, zone.query_file, seconds, rate=rate,
                                 clients=4, server_tree=ours.pid)
            spy.wait()
        finally:
            if churning is not None:
                churning.stop()
            ours.stop()
    head = (f"dnsperf: {result.qps:.0f} q/s, avg {result.avg_latency_ms} ms, "
            f"p99 {result.p99_ms} ms, lost {result.lost}, server CPU per query "
            f"{result.cpu_per_query_us} us (under py-spy: more than without)")
    return head + "\n" + summarize(folded)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_dns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--py-spy", default="py-spy", help="path of the py-spy binary")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--churn", action="store_true", help="with a planner/enactor pair")
    parser.add_argument("--rate", type=float, help="fixed dnsperf rate (default: max)")
    args = parser.parse_args(argv)
    require(args.py_spy)
    sys.stdout.write(asyncio.run(profile(args.py_spy, args.seconds, args.churn, args.rate))
                     + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
