"""What decoding costs inside Redis's Lua (issue 16: the 100,000-endpoint plan is bound by Redis).

``change_batch.lua`` starts every call with ``cjson.decode`` of its slice of change batches
and decodes each alias it meets. This prices, in the same Redis, on one slice of the enactor's
real batches (``BATCHES_PER_CALL`` of them, decided as the enactor decides them):

- ``cjson``: ``cjson.decode`` of the slice as the enactor sends it (JSON);
- ``cmsgpack``: ``cmsgpack.unpack`` of the same batches in MessagePack (packed by Redis itself
  from the decoded JSON, so no encoder of ours is measured);
- ``alias_cjson`` and ``alias_pattern``: one alias read with the decoder, and with a Lua
  pattern for the spelling ``records.alias_record`` writes.

Each is a loop in one script call, its Redis CPU (``/proc``, the threads' schedstat) less an
empty loop's, per batch or per alias; medians of ``--rounds``. The script checks that both
decoders read the same batches and changes as were sent, and both alias readers the same alias.

    .venv/bin/python -m bench.lua_decoders [--rounds 7] [--out F]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import zonedata
from bench.common import BenchError, run_in_tempdir, tree_cpu_seconds
from services.core.records import RecordType
from services.store import zone as zone_store
from services.store.plans import PlanStore

LOOPS = {"empty": 2_000, "cjson": 2_000, "cmsgpack": 2_000, "alias_cjson": 200_000,
         "alias_pattern": 200_000}
"""Iterations of each loop in one call (an alias is some hundred times cheaper than a slice)."""

SCRIPT = r"""
local json, mode, loops = ARGV[1], ARGV[2], tonumber(ARGV[3])
local packed = cmsgpack.pack(cjson.decode(json))
local alias = ARGV[4]
local function spelled(value)
  local g, t = string.match(value, '^{"generation":(%-?%d+),"target":"([^"\\%c]*)"}$')
  if g and not string.find(g, '^%-?0%d') then return {generation = tonumber(g), target = t} end
  return nil
end
local function counts(batches)
  local changes = 0
  for _, batch in ipairs(batches) do changes = changes + #batch.changes end
  return {#batches, changes}
end
if mode == 'check' then
  local a, b = cjson.decode(alias), spelled(alias)
  local same = a.generation == b.generation and a.target == b.target
  local j, m = counts(cjson.decode(json)), counts(cmsgpack.unpack(packed))
  return {j[1], j[2], m[1], m[2], same and 1 or 0}
end
if mode == 'cjson' then for _ = 1, loops do cjson.decode(json) end
elseif mode == 'cmsgpack' then for _ = 1, loops do cmsgpack.unpack(packed) end
elseif mode == 'alias_cjson' then for _ = 1, loops do cjson.decode(alias) end
elseif mode == 'alias_pattern' then for _ = 1, loops do spelled(alias) end
elseif mode ~= 'empty' then return redis.error_reply('unknown mode ' .. mode) end
return {#json, #packed}
"""


async def measure(root: Path, rounds: int, scale: float = 1.0) -> dict[str, Any]:
    """The figures; ``scale`` shortens the loops (a test's run)."""
    loops = {mode: max(1, int(n * scale)) for mode, n in LOOPS.items()}
    async with zonedata.store(root, 2 * zone_store.BATCHES_PER_CALL) as s:
        await s.apply_plan(1)
        await s.apply_plan(2)
        await s.publish_plan(3)
        plan = await PlanStore(s.client).newest()
        assert plan is not None
        items = list(plan.endpoints.items())[:zone_store.BATCHES_PER_CALL]
        batches = await s.window_batches(3, items, s.enactor().policy, int(time.time() * 1000))
        alias = next(c.rrset.value for b in batches for c in b.changes
                     if c.rrset.type is RecordType.ALIAS)
        payload = zone_store._batches_json(batches)
        sha = await s.client.script_load(SCRIPT)
        sent = [len(batches), sum(len(b.changes) for b in batches)]
        check = await s.client.evalsha(sha, 0, payload, "check", 1, alias)
        if check != [*sent, *sent, 1]:
            raise BenchError(f"the decoders disagree with what was sent {sent}: {check}")
        pid = s.redis.process.pid if s.redis.process else 0
        cpu: dict[str, list[float]] = {mode: [] for mode in loops}
        sizes: list[int] = []
        for _ in range(rounds):
            for mode, n in loops.items():
                before = tree_cpu_seconds(pid)
                sizes = await s.client.evalsha(sha, 0, payload, mode, n, alias)
                cpu[mode].append(1e6 * (tree_cpu_seconds(pid) - before) / n)
    per_call = {mode: statistics.median(v) for mode, v in cpu.items()}
    empty = per_call["empty"]
    return {
        "rounds": rounds, "loops": loops, "batches": sent[0], "changes": sent[1],
        "slice_bytes": {"json": sizes[0], "msgpack": sizes[1]},
        "us_per_batch": {mode: round((per_call[mode] - empty) / sent[0], 2)
                         for mode in ("cjson", "cmsgpack")},
        "us_per_alias": {mode: round(per_call[mode] - empty, 3)
                         for mode in ("alias_cjson", "alias_pattern")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7, help="each loop measured this often")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return run_in_tempdir("lua_decoders", lambda root: measure(root, args.rounds), argv,
                          args.out)


if __name__ == "__main__":
    sys.exit(main())
