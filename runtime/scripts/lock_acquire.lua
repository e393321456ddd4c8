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
if #KEYS == 2 then
  -- One lock, the common case: a single SET NX decides.
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {0, redis.call('PTTL', KEYS[1]), 1}
  end
else
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
  for i = 1, #KEYS, 2 do
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
  end
end

-- A token is the server's clock in microseconds, or one more than the
-- key's last token when that is larger. So tokens grow per key even when the
-- counter expired, and even across a failover that lost the last writes
-- (as long as the new primary's clock is not behind the old one's by more
-- than the time between the two grants).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {1}
for i = 1, #KEYS, 2 do
  local last = tonumber(redis.call('GET', KEYS[i + 1]) or '0') or 0
  local token = math.max(last + 1, now)
  redis.call('SET', KEYS[i + 1], string.format('%.0f', token), 'PX', ARGV[3])
  out[#out + 1] = token
end
return out
