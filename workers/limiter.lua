-- batchery's global rate limiter: one continuously refilling bucket per budget, shared by every worker.
--
-- A budget has three dimensions, d = 1 requests, 2 tokens, 3 images. Each holds a level that refills at
-- its rate (units per second) up to its capacity (rate * burst seconds). A dimension whose rate is 0 is
-- not limited. Time comes from Redis TIME, so every machine sees one clock.
--
-- KEYS[1]  bucket hash: r, t, i (levels) and ts (last update, ms since the epoch). A missing hash is a
--          full bucket. It expires once it would have refilled to full, so losing it changes nothing.
-- KEYS[2]  pause key: while it exists, every acquire answers its remaining time to live.
--
-- ARGV[1]       operation: acquire | settle | observe | pause | snapshot
-- ARGV[2..4]    rate per second of requests, tokens, images (0 = not limited)
-- ARGV[5..7]    capacity of requests, tokens, images
-- ARGV[8..10]   operands, by operation:
--   acquire   the cost: requests, tokens, images. Taken all or none. A dimension's cost larger than its
--             capacity is taken when that dimension is full, leaving it in debt (below zero), but never
--             more than one capacity of debt: what is beyond it is forgiven.
--             Returns 0 when taken, else the whole milliseconds to wait until the cost would fit.
--   settle    the amounts to charge (positive) or refund (negative). A refund stops at capacity, a
--             charge may leave debt, at most one capacity of it. Returns 0.
--   observe   per dimension, a ceiling ("" = none): the level is lowered to it, never raised. Returns
--             1 when a level was lowered, else 0.
--   pause     ARGV[8] milliseconds; the longer of this and any current pause is kept, and the bucket is
--             drained so that it refills from empty when the pause ends: budget does not pile up
--             during a pause and burst into the upstream's next window. Returns 0.
--   snapshot  nothing. Returns the three levels as strings and the pause's remaining milliseconds.

local bucket_key = KEYS[1]
local pause_key = KEYS[2]
local op = ARGV[1]
local EPSILON = 1e-6

local rate, cap = {}, {}
for d = 1, 3 do
  rate[d] = tonumber(ARGV[1 + d]) / 1000.0 -- units per millisecond
  cap[d] = tonumber(ARGV[4 + d])
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000.0 + tonumber(clock[2]) / 1000.0

local function load()
  local raw = redis.call('HMGET', bucket_key, 'r', 't', 'i', 'ts')
  local stamp = tonumber(raw[4])
  local level = {}
  for d = 1, 3 do
    local stored = tonumber(raw[d])
    if stored == nil or stamp == nil then
      level[d] = cap[d]
    else
      level[d] = math.min(cap[d], stored + rate[d] * math.max(0, now - stamp))
    end
  end
  return level
end

local function save(level)
  local idle_ms = 0
  for d = 1, 3 do
    if rate[d] > 0 then
      idle_ms = math.max(idle_ms, (cap[d] - level[d]) / rate[d])
    end
  end
  redis.call('HSET', bucket_key,
    'r', string.format('%.17g', level[1]),
    't', string.format('%.17g', level[2]),
    'i', string.format('%.17g', level[3]),
    'ts', string.format('%.17g', now))
  redis.call('PEXPIRE', bucket_key, math.ceil(idle_ms) + 1000)
end

-- The level after taking amount: never more than one capacity below zero (a deeper level, left by a
-- pause, is kept as it is), so no single call can hold a bucket for longer than two refills.
local function charge(level, amount, capacity)
  return math.max(level - amount, math.min(level, -capacity))
end

if op == 'acquire' then
  local paused = redis.call('PTTL', pause_key)
  if paused > 0 then
    return paused
  end
  local cost = {tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])}
  local level = load()
  local wait = 0
  for d = 1, 3 do
    if rate[d] > 0 and cost[d] > 0 then
      local need = math.min(cost[d], cap[d])
      if level[d] < need - EPSILON then
        wait = math.max(wait, (need - level[d]) / rate[d])
      end
    end
  end
  if wait > 0 then
    return math.max(1, math.ceil(wait))
  end
  for d = 1, 3 do
    if rate[d] > 0 and cost[d] > 0 then
      level[d] = charge(level[d], cost[d], cap[d])
    end
  end
  save(level)
  return 0
end

if op == 'settle' then
  local level = load()
  for d = 1, 3 do
    local delta = tonumber(ARGV[7 + d])
    if rate[d] > 0 and delta ~= 0 then
      level[d] = math.min(cap[d], charge(level[d], delta, cap[d]))
    end
  end
  save(level)
  return 0
end

if op == 'observe' then
  local level = load()
  local lowered = 0
  for d = 1, 3 do
    local ceiling = tonumber(ARGV[7 + d])
    if rate[d] > 0 and ceiling ~= nil and ceiling < level[d] then
      level[d] = ceiling
      lowered = 1
    end
  end
  if lowered == 1 then
    save(level)
  end
  return lowered
end

if op == 'pause' then
  local ms = tonumber(ARGV[8])
  if ms > 0 and ms > redis.call('PTTL', pause_key) then
    redis.call('SET', pause_key, '1', 'PX', ms)
    local level = load()
    for d = 1, 3 do
      if rate[d] > 0 then
        level[d] = math.min(level[d], 0) - rate[d] * ms
      end
    end
    save(level)
  end
  return 0
end

if op == 'snapshot' then
  local level = load()
  local paused = math.max(0, redis.call('PTTL', pause_key))
  return {
    string.format('%.17g', level[1]),
    string.format('%.17g', level[2]),
    string.format('%.17g', level[3]),
    tostring(paused),
  }
end

return redis.error_reply('unknown limiter operation: ' .. tostring(op))
