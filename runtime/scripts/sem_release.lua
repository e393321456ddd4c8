-- sem_release: give a permit back, or leave the queue, and wake waiters.
--
-- KEYS[1]: T:sem (see sem_acquire)
-- ARGV[1]: permit id (or "")   ARGV[2]: waiter id (or "")   ARGV[3]: limit
-- ARGV[4]: T:sem:ch, the shard channel
--
-- Marks the permit released (for a minute, so that a repeat of this call,
-- a client retry after a lost reply, reports it released again) and takes
-- the waiter out of the queue, each only if there: releasing twice, or
-- someone else's id, changes nothing. When something changed and a permit
-- is free for a waiter, publishes "free <ticket>": waiters with tickets up
-- to that one should look again (the rest may sleep on). Returns 1 when the
-- permit was held (or released by this same call before), else 0.
local function n(x) return string.format('%.0f', x) end
local B = 1e13
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = KEYS[1]
local held = 0
local changed = false
if ARGV[1] ~= '' then
  local s = tonumber(redis.call('ZSCORE', k, 'h' .. ARGV[1]))
  if s and s > now then
    redis.call('ZADD', k, n(now - B), 'h' .. ARGV[1])
    held, changed = 1, true
  elseif s and s < 0 then
    held = 1
  end
end
if ARGV[2] ~= '' and redis.call('ZREM', k, 'q' .. ARGV[2]) == 1 then
  redis.call('ZREM', k, 'l' .. ARGV[2])
  changed = true
end
if changed then
  local free = tonumber(ARGV[3]) - redis.call('ZCOUNT', k, '(' .. n(now), '(' .. n(B))
  if free > 0 then
    local qs = redis.call('ZRANGEBYSCORE', k, n(B), '(' .. n(2 * B), 'WITHSCORES', 'LIMIT', free - 1, 1)
    if not qs[2] then
      qs = redis.call('ZREVRANGEBYSCORE', k, '(' .. n(2 * B), n(B), 'WITHSCORES', 'LIMIT', 0, 1)
    end
    if qs[2] then
      redis.call('SPUBLISH', ARGV[4], 'free ' .. n(tonumber(qs[2]) - B))
    end
  end
end
return held
