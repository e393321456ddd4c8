-- sem_extend: renew a permit's lease, if it is still held.
--
-- KEYS[1]: T:sem (see sem_acquire)
-- ARGV[1]: permit id   ARGV[2]: new lease in ms, from now
--
-- Returns 1 when renewed, 0 when the permit is no longer held (released, or
-- its lease ended).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = 'h' .. ARGV[1]
local deadline = tonumber(redis.call('ZSCORE', KEYS[1], h))
if not deadline or deadline <= now then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + ttl), h)
if redis.call('PTTL', KEYS[1]) < ttl * 2 then
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
return 1
