-- Apply change batches to the zone, each all or nothing, in order (our Route 53
-- ChangeResourceRecordSets, several calls of it in one round-trip).
--
-- KEYS[1] record sets hash   field "<name>|<TYPE>" -> canonical JSON value
-- KEYS[2] zone serial        integer, +1 per committed batch
-- KEYS[3] alias references   field "<target name>" -> number of ALIAS sets naming it
-- KEYS[4] tree index         sorted set of the generations that have trees; the set
--                            KEYS[4]:<generation> holds that generation's tree names (the
--                            clean-up reads the old ones there instead of scanning the zone)
-- ARGV[1] change notification channel
-- ARGV[2] now_ms: the writer's clock, passed in; the only time this script decides by
-- ARGV[3] the batches as one JSON array, each:
--   {"changes": [{"action": "CREATE"|"DELETE"|"UPSERT", "name": n, "type": t, "value": v,
--                 "if_unreferenced": bool}],
--    "fences": [{"name": n, "below": g}],      -- alias at n must name a generation < g
--    "not_after_ms": ms}                        -- reject if now_ms is past it
--
-- Returns a JSON array, one outcome per batch, in order: {"ok": true, "serial": s, "ms": t,
-- "live": [...]} or {"ok": false, "index": i, "reason": r, "detail": d} (index 0 = the batch
-- itself). Each batch is judged against the zone as the batches before it left it, exactly as
-- if it were sent alone after them: nothing of a batch is written unless every change of it
-- is valid (it is checked against an overlay of the zone), and a refused batch does not stop
-- the ones after it. Each committed batch takes its own serial and publishes its own
-- notification. The reads of all the batches go in two commands at the start, the writes of
-- all the committed ones in a few at the end (a script runs alone: no reader sees between).

redis.replicate_commands()
local channel = ARGV[1]
local now_ms = tonumber(ARGV[2])
local batches = cjson.decode(ARGV[3])
-- The commit's own time ("ms" in the notification and the reply) is Redis TIME: a measurement
-- (propagation is measured from it), never a decision. One reading for the call: the script
-- runs without interruption, so its batches commit in the same instant for every reader.
local now = redis.call('TIME')
local commit_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local null = cjson.null

-- A tree's record set: "plan-<generation>.<endpoint>|A" (services.core.names.tree_name).
local function tree_generation(key)
  return string.match(key, '^plan%-(%d+)%..*|A$')
end

-- Commands with many arguments, in slices (Lua's unpack stops near 8,000 values).
local SLICE = 1000
local function hmget(key, fields)
  local out = {}
  for first = 1, #fields, SLICE do
    local got = redis.call('HMGET', key, unpack(fields, first, math.min(first + SLICE - 1, #fields)))
    for i = 1, #got do out[first + i - 1] = got[i] end
  end
  return out
end
local function each_slice(command, key, args)  -- SLICE is even: HSET's pairs stay whole
  for first = 1, #args, SLICE do
    redis.call(command, key, unpack(args, first, math.min(first + SLICE - 1, #args)))
  end
end

-- The zone as the batches before this one left it. The batches' writes go to Redis at the
-- end of the call, all at once (nothing else runs inside a script, so nobody can tell): until
-- then every key a committed batch wrote, and every count it changed, is here, and a key not
-- here is read from Redis as it was when the call began.
local zone = {}      -- key -> value, or false when missing
local counts = {}    -- target name -> reference count
local written, written_seen = {}, {}  -- keys committed batches wrote, in order
local notifications = {}  -- theirs, in order: published after the writes (a script that fails
                          -- part-way, on a value no writer of ours makes, writes nothing and
                          -- tells nobody)
local counted, counted_seen = {}, {}  -- targets whose counts they changed
local serial = tonumber(redis.call('GET', KEYS[2]) or '0')

local function zone_value(key)
  local v = zone[key]
  if v == nil then
    v = redis.call('HGET', KEYS[1], key)
    zone[key] = v
  end
  return v
end

local function zone_count(target)
  local n = counts[target]
  if n == nil then
    n = tonumber(redis.call('HGET', KEYS[3], target) or '0')
    counts[target] = n
  end
  return n
end

local function reject(index, reason, detail)
  return {ok = false, index = index, reason = reason, detail = detail}
end

-- A lock record (the zone's only TXT record sets) whose DELETE or CREATE fails is held, or
-- was just taken, by another enactor: the batch lost the lock (the enactor backs off).
local function failed(ch, reason)
  if ch.type == 'TXT' then return 'lock_conflict' end
  return reason
end

local aliases = {} -- alias value -> decoded, once per value in the call
local function alias_of(value)
  if not value then return nil end
  local a = aliases[value]
  if a == nil then a = cjson.decode(value); aliases[value] = a end
  return a
end
-- For the reads ahead only: a value that is no alias fails where the original order of
-- checks meets it, not here.
local function target_of(value)
  local ok, a = pcall(alias_of, value)
  if ok and type(a) == 'table' and type(a.target) == 'string' then return a.target end
  return nil
end

local function fences_of(batch)
  if not batch.fences or batch.fences == null then return {} end
  return batch.fences
end

-- Every record set a batch names: its fences' aliases, its changes, the trees its new aliases
-- name (Route 53's rule below).
local function keys_read(batch)
  local keys = {}
  for _, fence in ipairs(fences_of(batch)) do keys[#keys + 1] = fence.name .. '|ALIAS' end
  for _, ch in ipairs(batch.changes) do
    keys[#keys + 1] = ch.name .. '|' .. ch.type
    if ch.type == 'ALIAS' and ch.action ~= 'DELETE' then
      local t = target_of(ch.value)
      if t then keys[#keys + 1] = t .. '|A' end
    end
  end
  return keys
end

local function apply(batch)
  if batch.not_after_ms and batch.not_after_ms ~= null and now_ms > batch.not_after_ms then
    return reject(0, 'lock_expired',
      'lock lease ended ' .. (now_ms - batch.not_after_ms) .. ' ms before the commit')
  end
  local changes = batch.changes
  local fences = fences_of(batch)

  local view = {}   -- key -> value, or false when missing or deleted in this batch
  local function current(key)
    local v = view[key]
    if v == nil then
      v = zone_value(key)
      view[key] = v
    end
    return v
  end

  for _, fence in ipairs(fences) do
    local alias = alias_of(current(fence.name .. '|ALIAS'))
    if alias and alias.generation >= fence.below then
      return reject(0, 'generation_fence', fence.name .. ' already serves generation ' ..
        alias.generation .. ', not older than ' .. fence.below)
    end
  end

  local refs = {}   -- target -> reference count after this batch
  local function refcount(target)
    local n = refs[target]
    if n == nil then
      n = zone_count(target)
      refs[target] = n
    end
    return n
  end

  local changed = {} -- keys this batch writes, in order of first change
  local changed_seen = {}
  for i, ch in ipairs(changes) do
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
        return reject(i, 'tree_referenced',
          ch.name .. ' is named by ' .. refcount(ch.name) .. ' alias(es)')
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
      changed[#changed + 1] = key
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

  -- Route 53's rule: an alias must name an existing record set (checked after the whole
  -- batch, so a batch may create a tree and point an alias at it).
  for i, ch in ipairs(changes) do
    if ch.type == 'ALIAS' and ch.action ~= 'DELETE' then
      local target = alias_of(ch.value).target
      if not current(target .. '|A') then
        return reject(i, 'alias_target_missing', ch.name .. ' -> ' .. target .. ' does not exist')
      end
    end
  end

  local live = {}  -- record sets this batch deletes while an alias still names them
  local values = {}
  for i, key in ipairs(changed) do
    local v = view[key]
    values[i] = v
    if not v then
      local name = string.match(key, '^(.*)|[^|]*$')
      if refcount(name) > 0 then live[#live + 1] = name end
    end
    zone[key] = v
    if not written_seen[key] then written_seen[key] = true; written[#written + 1] = key end
  end
  for target, n in pairs(refs) do
    counts[target] = n
    if not counted_seen[target] then counted_seen[target] = true; counted[#counted + 1] = target end
  end
  serial = serial + 1
  -- The notification carries the batch's new values, so a follower applies it without
  -- reading: in serial order, the values are exactly the zone at that serial. Lines: serial,
  -- ms, then each key and its value marked '=' (set) or '-' alone (deleted); no encoder
  -- (cjson spent more here than the rest of a batch). A value with a line break in it goes as
  -- JSON {"serial", "ms", "keys", "values" (false: deleted)} instead.
  local lines, plain = {serial, commit_ms}, true
  for i, key in ipairs(changed) do
    local v = values[i]
    if string.find(key, '\n', 1, true) or (v and string.find(v, '\n', 1, true)) then
      plain = false
      break
    end
    lines[#lines + 1] = key
    lines[#lines + 1] = v and ('=' .. v) or '-'
  end
  if plain then
    notifications[#notifications + 1] = table.concat(lines, '\n')
  else
    notifications[#notifications + 1] = cjson.encode({serial = serial, ms = commit_ms,
                                                      keys = changed, values = values})
  end
  return {ok = true, serial = serial, ms = commit_ms, live = live}
end

-- Every batch's reads at once: the record sets they name, then the reference counts their
-- changes touch (the old and new aliases' targets, the record sets they delete). A batch after
-- another that changed them finds them in the call's state; what no read foresaw is read alone.
local wanted, seen = {}, {}
for _, batch in ipairs(batches) do
  for _, key in ipairs(keys_read(batch)) do
    if not seen[key] then seen[key] = true; wanted[#wanted + 1] = key end
  end
end
local got = hmget(KEYS[1], wanted)
for i, key in ipairs(wanted) do zone[key] = got[i] end
local targets = {}
seen = {}
local function target(name)
  if name and not seen[name] then seen[name] = true; targets[#targets + 1] = name end
end
for _, batch in ipairs(batches) do
  for _, ch in ipairs(batch.changes) do
    if ch.type == 'ALIAS' then
      local old = zone[ch.name .. '|ALIAS']
      if old then target(target_of(old)) end
      if ch.action ~= 'DELETE' then target(target_of(ch.value)) end
    end
    if ch.action == 'DELETE' then target(ch.name) end
  end
end
got = hmget(KEYS[3], targets)
for i, name in ipairs(targets) do counts[name] = tonumber(got[i] or '0') end

local outcomes = {}
local committed = 0
for b, batch in ipairs(batches) do
  outcomes[b] = apply(batch)
  if outcomes[b].ok then committed = committed + 1 end
end

-- The committed batches' writes: each field's last value (HSET; HDEL where it has none).
local function write(hash, fields, value_of)
  local sets, deletes = {}, {}
  for _, field in ipairs(fields) do
    local v = value_of(field)
    if v then
      sets[#sets + 1] = field
      sets[#sets + 1] = v
    else
      deletes[#deletes + 1] = field
    end
  end
  each_slice('HSET', hash, sets)
  each_slice('HDEL', hash, deletes)
end
write(KEYS[1], written, function(key) return zone[key] end)
write(KEYS[3], counted, function(target) return counts[target] > 0 and counts[target] end)

-- The tree index with them: each generation's set of tree names, and the generations that
-- have trees.
local added, removed = {}, {}  -- generation -> the tree names to add to its set, or remove
local generations, touched = {}, {}  -- the generations of those trees, each once
for _, key in ipairs(written) do
  local generation = tree_generation(key)
  if generation then
    if not touched[generation] then
      touched[generation] = true
      generations[#generations + 1] = generation
    end
    local into = zone[key] and added or removed
    into[generation] = into[generation] or {}
    into[generation][#into[generation] + 1] = string.sub(key, 1, -3)
  end
end
for _, generation in ipairs(generations) do
  local trees = KEYS[4] .. ':' .. generation
  if added[generation] then
    each_slice('SADD', trees, added[generation])
    redis.call('ZADD', KEYS[4], generation, generation)
  end
  if removed[generation] then
    each_slice('SREM', trees, removed[generation])
    if redis.call('SCARD', trees) == 0 then redis.call('ZREM', KEYS[4], generation) end
  end
end
if committed > 0 then redis.call('INCRBY', KEYS[2], committed) end
for _, notification in ipairs(notifications) do redis.call('PUBLISH', channel, notification) end
return cjson.encode(outcomes)
