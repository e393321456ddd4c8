-- sem_release: give a permit back, or leave the queue, and wake waiters.
--
-- KEYS[1]: T:sem:holders   KEYS[2]: T:sem:queue   KEYS[3]: T:sem:qlease
-- KEYS[4]: T:sem:ch
-- ARGV[1]: permit id (or "" )   ARGV[2]: waiter id (or "")
--
-- Removes the permit from the holders and the waiter from the queue (each
-- only if there: releasing twice, or someone else's id, changes nothing).
-- When something was removed and others wait, publishes "free". Returns
-- 1 when the permit was held, else 0.
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
if changed and redis.call('ZCARD', KEYS[2]) > 0 then
  redis.call('SPUBLISH', KEYS[4], 'free')
end
return held
