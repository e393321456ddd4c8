-- sem_release: give a permit back, or leave the queue, and wake waiters.
--
-- KEYS[1]: T:sem:holders   KEYS[2]: T:sem:queue   KEYS[3]: T:sem:qlease
-- KEYS[4]: T:sem:ch
-- ARGV[1]: permit id (or "")   ARGV[2]: waiter id (or "")   ARGV[3]: limit
--
-- Removes the permit from the holders and the waiter from the queue (each
-- only if there: releasing twice, or someone else's id, changes nothing).
-- When something was removed and a permit is free for a waiter, publishes
-- "free <ticket>": waiters with tickets up to that one should look again
-- (the rest may sleep on). Returns 1 when the permit was held, else 0.
local held = 0
local changed = false
if ARGV[1] ~= '' then
  held = redis.call('ZREM', KEYS[1], ARGV[1])
  changed = held == 1
end
if ARGV[2] ~= '' and redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
  redis.call('ZREM', KEYS[3], ARGV[2])
  changed = true
end
if changed then
  local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
  if free > 0 then
    local q = redis.call('ZRANGE', KEYS[2], free - 1, free - 1, 'WITHSCORES')
    if not q[2] then q = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES') end
    if q[2] then redis.call('SPUBLISH', KEYS[4], 'free ' .. q[2]) end
  end
end
return held
