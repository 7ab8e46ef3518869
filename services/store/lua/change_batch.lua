-- Apply one change batch to the zone, all or nothing (our Route 53 ChangeResourceRecordSets).
--
-- KEYS[1] record sets hash   field "<name>|<TYPE>" -> canonical JSON value
-- KEYS[2] zone serial        integer, +1 per committed batch
-- KEYS[3] alias references   field "<target name>" -> number of ALIAS sets naming it
-- ARGV[1] the batch as JSON:
--   {"changes": [{"action": "CREATE"|"DELETE"|"UPSERT", "name": n, "type": t, "value": v,
--                 "if_unreferenced": bool}],
--    "fences": [{"name": n, "below": g}],      -- alias at n must name a generation < g
--    "not_after_ms": ms}                        -- reject if ARGV[3] is past it
-- ARGV[2] change notification channel
-- ARGV[3] now_ms: the writer's clock, passed in; the only time this script decides by
--
-- Returns JSON {"ok": true, "serial": s, "ms": t} or
--              {"ok": false, "index": i, "reason": r, "detail": d} (index 0 = the batch itself).
-- Nothing is written unless every change is valid: pass one checks against an overlay,
-- pass two writes.

redis.replicate_commands()
local batch = cjson.decode(ARGV[1])
local now_ms = tonumber(ARGV[3])
-- The commit's own time ("ms" in the notification and the reply) is Redis TIME: a measurement
-- (propagation is measured from it), never a decision.
local now = redis.call('TIME')
local commit_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

local function reject(index, reason, detail)
  return cjson.encode({ok = false, index = index, reason = reason, detail = detail})
end

if batch.not_after_ms and batch.not_after_ms ~= cjson.null and now_ms > batch.not_after_ms then
  return reject(0, 'lock_expired',
    'lock lease ended ' .. (now_ms - batch.not_after_ms) .. ' ms before the commit')
end

local view = {}   -- key -> value, or false when deleted in this batch
local changed = {} -- keys this batch writes, in order of first change
local changed_seen = {}
local refs = {}   -- target -> reference count after this batch
local function current(key)
  local v = view[key]
  if v == nil then
    v = redis.call('HGET', KEYS[1], key)
    view[key] = v
  end
  return v
end
local function refcount(target)
  local n = refs[target]
  if n == nil then
    n = tonumber(redis.call('HGET', KEYS[3], target) or '0')
    refs[target] = n
  end
  return n
end
local function alias_of(value)
  if not value then return nil end
  return cjson.decode(value)
end

for i, fence in ipairs(batch.fences or {}) do
  local alias = alias_of(current(fence.name .. '|ALIAS'))
  if alias and alias.generation >= fence.below then
    return reject(0, 'generation_fence', fence.name .. ' already serves generation ' ..
      alias.generation .. ', not older than ' .. fence.below)
  end
end

-- A lock record (the zone's only TXT record sets) whose DELETE or CREATE fails is held, or
-- was just taken, by another enactor: the batch lost the lock (the enactor backs off).
local function failed(ch, reason)
  if ch.type == 'TXT' then return 'lock_conflict' end
  return reason
end

for i, ch in ipairs(batch.changes) do
  local key = ch.name .. '|' .. ch.type
  local old = current(key)
  if ch.action == 'DELETE' then
    if not old then
      return reject(i, failed(ch, 'delete_missing'), key .. ' does not exist')
    end
    if old ~= ch.value then
      return reject(i, failed(ch, 'delete_mismatch'), key .. ' holds a different value')
    end
    if ch.if_unreferenced and refcount(ch.name) > 0 then
      return reject(i, 'tree_referenced', ch.name .. ' is named by ' .. refcount(ch.name) .. ' alias(es)')
    end
    view[key] = false
  elseif ch.action == 'CREATE' or ch.action == 'UPSERT' then
    if ch.action == 'CREATE' and old then
      return reject(i, failed(ch, 'create_exists'), key .. ' already exists')
    end
    view[key] = ch.value
  else
    return reject(i, 'bad_action', 'unknown action ' .. tostring(ch.action))
  end
  if not changed_seen[key] then
    changed_seen[key] = true
    table.insert(changed, key)
  end
  if ch.type == 'ALIAS' then
    if old then
      local t = alias_of(old).target
      refs[t] = refcount(t) - 1
    end
    if ch.action ~= 'DELETE' then
      local t = alias_of(ch.value).target
      refs[t] = refcount(t) + 1
    end
  end
end

-- Route 53's rule: an alias must name an existing record set (checked after the whole batch,
-- so a batch may create a tree and point an alias at it).
for i, ch in ipairs(batch.changes) do
  if ch.type == 'ALIAS' and ch.action ~= 'DELETE' then
    local target = alias_of(ch.value).target
    if not current(target .. '|A') then
      return reject(i, 'alias_target_missing', ch.name .. ' -> ' .. target .. ' does not exist')
    end
  end
end

local live = {}  -- record sets this batch deletes while an alias still names them
for _, key in ipairs(changed) do
  if not view[key] then
    local name = string.match(key, '^(.*)|[^|]*$')
    if refcount(name) > 0 then table.insert(live, name) end
  end
  if view[key] then redis.call('HSET', KEYS[1], key, view[key]) else redis.call('HDEL', KEYS[1], key) end
end
for target, n in pairs(refs) do
  if n > 0 then redis.call('HSET', KEYS[3], target, n) else redis.call('HDEL', KEYS[3], target) end
end
local serial = redis.call('INCR', KEYS[2])
-- The notification carries the batch's new values (false: deleted), so a follower applies
-- it without reading: in serial order, the values are exactly the zone at that serial.
local values = {}
for i, key in ipairs(changed) do values[i] = view[key] end
redis.call('PUBLISH', ARGV[2], cjson.encode({serial = serial, ms = commit_ms, keys = changed,
                                             values = values}))
return cjson.encode({ok = true, serial = serial, ms = commit_ms, live = live})
