"""The zone store's reads, each one Lua script (one round-trip, one atomic step of Redis).

Replies of many elements come back as one string (:data:`LINES`) and :func:`flat` splits them:
redis-py parses a reply of many elements at several us each, and one string is split in C.
"""

from __future__ import annotations

import json

LINES = """
-- The elements of a flat reply, for the client: joined by line breaks ('lines'), which costs
-- next to nothing, or as one JSON array ('json') when an element holds a line break itself
-- (no name or value this project writes does: its JSON has none).
local function lines_or_json(flat)
  for i = 1, #flat do
    if string.find(flat[i], '\\n', 1, true) then return {'json', cjson.encode(flat)} end
  end
  return {'lines', table.concat(flat, '\\n')}
end
"""

HMGET = """
-- HMGET of any number of fields: out[i] is fields[i]'s value, false where it is missing; sent
-- 1,000 fields at a time (Lua's unpack stops near 8,000 values). change_batch.lua has its own.
local function hmget(hash, fields)
  local out = {}
  for first = 1, #fields, 1000 do
    local got = redis.call('HMGET', hash, unpack(fields, first, math.min(first + 999, #fields)))
    for i = 1, #got do out[first + i - 1] = got[i] end
  end
  return out
end
"""

READ_ENDPOINTS = LINES + HMGET + """
-- An alias's target, by the decoder: a Lua pattern for alias_record's spelling saved Redis next
-- to nothing (a probe by hand: 0.03 us an alias) and was a second reader of that spelling.
local function target_of(alias)
  return cjson.decode(alias).target
end
local names = cjson.decode(ARGV[1])
local fields = {}
for i = 1, #names, 4 do
  fields[i] = names[i] .. '|ALIAS'
  fields[i + 1] = names[i + 1] .. '|ALIAS'
  fields[i + 2] = names[i + 2] .. '|TXT'
  fields[i + 3] = names[i + 3] .. '|A'
end
local got = hmget(KEYS[1], fields)
local targets = {}  -- the alias and rollback targets' trees, in the same order
for i = 1, #names, 4 do
  for j = 0, 1 do
    local alias = got[i + j]
    targets[#targets + 1] = alias and (target_of(alias) .. '|A') or ''
  end
end
local target_values = hmget(KEYS[1], targets)
local out = {}
local function value(v) return v or '' end
for e = 0, #names / 4 - 1 do
  local i, n = 4 * e + 1, 6 * e
  out[n + 1] = value(got[i])
  out[n + 2] = got[i] and value(target_values[2 * e + 1]) or ''
  out[n + 3] = value(got[i + 1])
  out[n + 4] = got[i + 1] and value(target_values[2 * e + 2]) or ''
  out[n + 5] = value(got[i + 2])
  out[n + 6] = value(got[i + 3])
end
return lines_or_json(out)
"""
"""Every endpoint's records in one call: ARGV[1] is one JSON array of (endpoint, rollback,
lock, tree) per endpoint, the reply six values per endpoint as :func:`flat` reads them (an
empty string for a missing record set: no record set's value is empty). Two HMGETs for a window
(its record sets, then its aliases' trees), not six HGETs per endpoint. The values go back as
lines, not JSON: cjson escaped every quote of every tree and the client unescaped them, about
3 us of the client's time per endpoint (a probe by hand: 5.2 us per endpoint with JSON, 2.5 as
lines; Redis's share fell less, 11.2 to 10.4 us, most of it the HMGETs' lookups)."""


SCAN_TREES = LINES + """
local reply = redis.call('HSCAN', KEYS[1], ARGV[1], 'MATCH', ARGV[2] .. '|A', 'COUNT', ARGV[3])
local out = lines_or_json(reply[2])
return {reply[1], out[1], out[2]}
"""
"""One HSCAN step over the A record sets whose names match ARGV[2]: the cursor, then their
fields and values (field, value, ...) as :func:`flat` reads them (``ZoneStore.trees``: every
tree, which the clean-up read this way before the tree index). Encoding them with cjson was
most of such a scan (tree values are JSON, every quote escaped): 3 s of Redis's time in a
round of 100,000 endpoints."""

HGETALL_LINES = LINES + """
local out = lines_or_json(redis.call('HGETALL', KEYS[1]))
return {out[1], out[2]}
"""
"""HGETALL as :func:`flat` reads it (field, value, ...): redis-py parses a reply of many
elements at several us each; one string is split in C. cjson.encode of the reference counts'
200,000 pairs took 2 s of Redis's time in a round of 100,000 endpoints."""


PRESENT = HMGET + """
-- The fields of a hash that are present, each with its label: label, value, ... (labels[i]
-- names fields[i]).
local function present(hash, fields, labels)
  local got, out = hmget(hash, fields), {}
  for i = 1, #fields do
    if got[i] then
      out[#out + 1] = labels[i]
      out[#out + 1] = got[i]
    end
  end
  return out
end
"""

OLD_TREES = LINES + PRESENT + """
redis.replicate_commands()  -- HSCAN below, then writes
local rrsets, index, indexed = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', indexed) == 0 then  -- a zone from before the index: index it once
  local cursor = '0'
  repeat
    local reply = redis.call('HSCAN', rrsets, cursor, 'MATCH', 'plan-*|A', 'COUNT', 1000)
    cursor = reply[1]
    for i = 1, #reply[2], 2 do
      local key = reply[2][i]
      local generation = string.match(key, '^plan%-(%d+)%..*|A$')
      if generation then
        redis.call('SADD', index .. ':' .. generation, string.sub(key, 1, -3))
        redis.call('ZADD', index, generation, generation)
      end
    end
  until cursor == '0'
  redis.call('SET', indexed, '1')
end
local newest = redis.call('ZREVRANGE', index, 0, tonumber(ARGV[2]) - 1)
local names = {}
for _, generation in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. ARGV[1])) do
  for _, name in ipairs(redis.call('SMEMBERS', index .. ':' .. generation)) do
    names[#names + 1] = name
  end
end
local fields = {}
for i, name in ipairs(names) do fields[i] = name .. '|A' end
local flat = lines_or_json(present(rrsets, fields, names))
return {table.concat(newest, ','), flat[1], flat[2]}
"""
"""The clean-up's trees, from the tree index in one call: the newest ARGV[2] generations that
have trees, then every tree older than generation ARGV[1] with its value (name, value, ... as
:func:`flat` reads them). A scan of every tree gave the clean-up the same, reading every tree it
keeps too: in a zone of 100,000 endpoints, 2.7 s of Redis's time a round."""

HMGET_LINES = LINES + PRESENT + """
local flat = lines_or_json(present(KEYS[1], ARGV, ARGV))
return {flat[1], flat[2]}
"""
"""HMGET of ARGV's fields, the present ones as :func:`flat` reads them (field, value, ...)."""


def flat(kind: str, payload: str) -> list[str]:
    """The elements of a flat reply of :data:`LINES`."""
    if kind == "json":
        decoded = json.loads(payload)
        return decoded if isinstance(decoded, list) else []  # cjson spells [] as {}
    return payload.split("\n") if payload else []
