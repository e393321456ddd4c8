-- lock_acquire: take one or more locks of one slot, all or nothing, each with
-- a fencing token from its own counter.
--
-- KEYS: lock1, fence1, lock2, fence2, ...
-- ARGV[1]: owner id (unique per acquisition)
-- ARGV[2]: lease in ms
-- ARGV[3]: how long an unused fencing counter lives, in ms
--
-- Returns {1, token1, token2, ...} when every lock was free and is now held
-- by the owner, or {0, pttl, i1, i2, ...}: the 1-based positions of the locks
-- that others hold, and the smallest remaining lease among them in ms (-1
-- when none of them has a lease, e.g. a foreign key without TTL).
local held, wait = {}, -1
for i = 1, #KEYS, 2 do
  local t = redis.call('PTTL', KEYS[i])
  if t ~= -2 then
    held[#held + 1] = (i + 1) / 2
    if t >= 0 and (wait < 0 or t < wait) then wait = t end
  end
end
if #held > 0 then
  return {0, wait, unpack(held)}
end

-- A counter that is created anew starts at the server's clock in
-- microseconds, so it exceeds every token an expired counter handed out.
local now
local out = {1}
for i = 1, #KEYS, 2 do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  local fence = KEYS[i + 1]
  if redis.call('EXISTS', fence) == 0 then
    if not now then
      local t = redis.call('TIME')
      now = t[1] .. string.format('%06d', tonumber(t[2]))
    end
    redis.call('SET', fence, now)
  end
  out[#out + 1] = redis.call('INCR', fence)
  redis.call('PEXPIRE', fence, ARGV[3])
end
return out
