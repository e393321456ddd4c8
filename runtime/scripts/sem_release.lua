-- sem_release: give a permit back, or leave the queue, and wake waiters.
--
-- KEYS[1]: T:sem (see sem_acquire)
-- ARGV[1]: permit id (or "")   ARGV[2]: waiter id (or "")   ARGV[3]: limit
-- ARGV[4]: T:sem:ch, the shard channel
-- ARGV[5]: the grace, in ms, of a waiter a permit is offered to
--
-- Marks the permit released (for a minute, so that a repeat of this call,
-- a client retry after a lost reply, reports it released again) and takes
-- the waiter out of the queue, each only if there: releasing twice, or
-- someone else's id, changes nothing. When something changed and permits
-- are free (under the smallest limit of the caller's and the holders'),
-- offers them to the first waiters, as sem_acquire does: their place
-- lasts the grace from now, and "free <t1> <t2>" is published (waiters
-- with tickets up to t1 look again now, up to t2 after the grace). Returns
-- 1 when the permit was held (or released by this same call before), else
-- 0.
local function n(x) return string.format('%.0f', x) end
local B = 1e13
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = KEYS[1]
local grace = tonumber(ARGV[5])
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
  local holders = redis.call('ZRANGEBYSCORE', k, '(' .. n(now), '(' .. n(B))
  local inForce = tonumber(ARGV[3])
  for _, m in ipairs(holders) do
    local hl = tonumber(string.match(m, '/(%d+)$'))
    if hl and hl < inForce then inForce = hl end
  end
  local free = inForce - #holders
  if free > 0 then
    local qs = redis.call('ZRANGEBYSCORE', k, n(B), '(' .. n(2 * B), 'WITHSCORES', 'LIMIT', 0, 2 * free)
    local t1, t2
    for i = 1, #qs, 2 do
      local ticket = tonumber(qs[i + 1]) - B
      if (i - 1) / 2 < free then
        redis.call('ZADD', k, 'LT', n(2 * B + now + grace), 'l' .. string.sub(qs[i], 2))
        t1 = ticket
      end
      t2 = ticket
    end
    if t1 then
      redis.call('SPUBLISH', ARGV[4], 'free ' .. n(t1) .. ' ' .. n(t2))
    end
  end
end
return held
