"""``dnsrace nlb failover off|on``: the operators' switch for the NLB's automatic AZ failover
(what they did on 20 October 2025), and ``dnsrace nlb serve``; the arguments are declared in
``services.tools.serve``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiohttp

from services.config import Settings


async def _post(settings: Settings, enabled: bool) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{settings.metrics_port('nlb')}/nlb/failover"
    async with aiohttp.ClientSession() as session, session.post(
            url, json={"enabled": enabled}, timeout=aiohttp.ClientTimeout(total=3)) as r:
        return r.status, await r.json()


def command(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "serve":
        from services.nlb.service import serve
        from services.runtime.service import run_service

        return run_service(serve, settings, "nlb")
    try:
        status, answer = asyncio.run(_post(settings, args.state == "on"))
    except (aiohttp.ClientError, TimeoutError) as e:
        print(f"dnsrace nlb failover: the nlb process does not answer on port "
              f"{settings.metrics_port('nlb')} ({e}); start it with 'dnsrace nlb serve'",
              file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0 if status == 200 else 1
