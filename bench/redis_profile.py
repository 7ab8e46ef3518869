"""Where Redis's CPU goes while one enactor applies a plan: a ``perf`` profile of the server.

One round of ``Enactor.run_round`` as ``bench.enactor_bench`` times it (the cluster's Redis
configuration: append-only file, fsync always; a zone of two generations; the clean-up scans
every tree and deletes none), with ``perf record`` sampling the Redis process only. The
samples are grouped by what the function belongs to (Lua's interpreter and its garbage
collector, cjson, Redis's hash lookups, the clean-up's scans, the append-only file's rewrite,
memory allocation, the kernel), and the top functions are kept as they are.

    .venv/bin/python -m bench.redis_profile [--endpoints 30000] [--out FILE.json]

Needs ``perf`` (Debian's linux-perf) and the right to profile the Redis process (root, or
``kernel.perf_event_paranoid`` <= 1).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import enactor_bench, zonedata
from bench.common import run_in_tempdir
from services.core import names
from services.enactor.service import collector_tuned

SAMPLE_HZ = 999
TOP = 40
GROUPS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Lua garbage collector", re.compile(
        r"^(sweeplist|sweepwholelist|propagatemark|singlestep|luaC_\w+|markroot|traverse\w+|"
        r"reallymarkobject|atomic|freeobj|luaF_freeproto|cleartable)$")),
    ("Lua strings (creation, interning)", re.compile(r"^luaS_\w+$")),
    ("cjson", re.compile(r"^(json_\w+|strbuf_\w+|fpconv_\w+|lua_cjson_\w+)$")),
    ("Lua interpreter and tables", re.compile(
        r"^(lua[A-Z]_\w+|lua_\w+|luaL_\w+|luaRedis\w+|luaPush\w+|luaReplyToRedisReply|"
        r"luaCallFunction|newkey|mainposition|setnodevector|resize|rehash|numusehash|"
        r"computesizes|luaH_\w+|luaV_\w+|luaD_\w+|luaM_\w+|luaO_\w+|luaT_\w+|index2adr|"
        r"str_\w+|tconcat|addfield|luaB_\w+|auxgetinfo|math_\w+|unpack|luaConvert\w+|"
        r"redisProtocolToLuaType\w*)$")),
    ("Redis hash lookups and writes", re.compile(
        r"^(dict(?!Scan)\w+|siphash\w*|hashType\w+|lookupKey\w*|ziplist\w+|lp\w+|sds\w+|"
        r"hset\w+|hmget\w+|hdel\w+|addHash\w+)$")),
    ("clean-up's scans (HSCAN)", re.compile(
        r"^(dictScan|scan\w+|stringmatch\w*|matchbracketclass|addHashIteratorCursorToReply)$")),
    ("append-only file and its rewrite", re.compile(
        r"^(rdb\w+|lzf_\w+|crc\w+|rio\w+|aof\w+|feedAppendOnlyFile|catAppendOnly\w+|"
        r"rewriteAppendOnlyFile\w*)$")),
    ("memory allocation", re.compile(
        r"^(malloc|cfree\S*|free|realloc|calloc|_int_\w+|__malloc_\w+|__libc_\w+|zmalloc\w*|"
        r"zfree\w*|zrealloc\w*|ztrymalloc\w*|malloc_\w+|tcache_\w+|unlink_chunk\S*)$")),
)
LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[([.k])\]\s+(\S+)")


def lua_string_hash(text: str) -> int:
    """Lua 5.1's string hash (``luaS_newlstr``, Redis's Lua): from the end, every
    ``len // 32 + 1``-th byte only, so strings of one length that differ only in the bytes it
    skips share a hash, and interning walks one chain for all of them."""
    data = text.encode()
    h = len(data)
    step = (len(data) >> 5) + 1
    at = len(data)
    while at >= step:
        h = (h ^ (((h << 5) & 0xFFFFFFFF) + (h >> 2) + data[at - 1])) & 0xFFFFFFFF
        at -= step
    return h


def distinct_lua_hashes(endpoints: int) -> dict[str, Any]:
    """How many distinct Lua hashes the zone's names and keys have, by kind of string."""
    cells = names.endpoints(max(0, endpoints - 3))[3:]
    kinds = {"endpoint names": list(cells),
             "alias keys (name|ALIAS)": [f"{e}|ALIAS" for e in cells],
             "tree keys (plan-3.name|A)": [f"{names.tree_name(3, e)}|A" for e in cells]}
    return {kind: {"strings": len(texts), "distinct_hashes": len(set(map(lua_string_hash, texts)))}
            for kind, texts in kinds.items()}


def group_of(dso: str, kind: str, symbol: str) -> str:
    """The group a sampled function is counted in (``kind`` is perf's ``.`` or ``k``)."""
    if kind == "k" or dso.startswith("[kernel"):
        return "kernel (sockets, the append-only file's writes and fsync)"
    for name, pattern in GROUPS:
        if pattern.match(symbol):
            return name
    return "other"


def parse_report(text: str) -> list[tuple[float, str, str, str]]:
    """``perf report --sort dso,symbol`` lines as (share %, dso, kind, symbol)."""
    rows = []
    for line in text.splitlines():
        if (m := LINE.match(line)) is not None:
            rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))
    return rows


def summarise(rows: list[tuple[float, str, str, str]]) -> dict[str, Any]:
    groups: dict[str, float] = {}
    for share, dso, kind, symbol in rows:
        name = group_of(dso, kind, symbol)
        groups[name] = groups.get(name, 0.0) + share
    return {
        "groups_pct": {k: round(v, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "top": [{"pct": share, "dso": dso, "symbol": symbol, "group": group_of(dso, kind, symbol)}
                for share, dso, kind, symbol in rows[:TOP]],
    }


async def profile(root: Path, endpoints: int) -> dict[str, Any]:
    with collector_tuned():
        async with zonedata.store(root, endpoints, appendonly=False) as s:
            await s.apply_plan(1)
            await s.apply_plan(2)
            await enactor_bench._persistence(s, appendonly=True)
            pid = s.redis.process.pid if s.redis.process else 0
            data = root / "perf.data"
            perf = subprocess.Popen(
                ["perf", "record", "-F", str(SAMPLE_HZ), "-p", str(pid), "-o", str(data)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)  # perf attaches before the round starts
            if perf.poll() is not None:
                raise SystemExit(f"perf record failed: {perf.stderr.read() if perf.stderr else ''}"
                                 "\nrun as root or lower kernel.perf_event_paranoid to 1")
            timed = await enactor_bench.timed_round(s, 3, endpoints)
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,symbol", "-g",
         "none", "--percentage", "relative", "--stdio"],
        capture_output=True, text=True, check=True).stdout
    keep = ("wall_s", "client_cpu_s", "redis_cpu_s", "redis_cpu_us_per_endpoint",
            "applied_endpoints", "commands")
    return {"endpoints": endpoints, "sample_hz": SAMPLE_HZ,
            "round": {k: timed[k] for k in keep}, **summarise(parse_report(report)),
            "lua_string_hashes": distinct_lua_hashes(endpoints)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--endpoints", type=int, default=30_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        parser.error("perf is not installed: apt-get install linux-perf")
    if args.endpoints < 1:
        parser.error("--endpoints must be at least 1")
    return run_in_tempdir("redis_profile", lambda root: profile(root, args.endpoints), argv,
                          args.out)


if __name__ == "__main__":
    sys.exit(main())
