-- sem_extend: renew a permit's lease, if it is still held.
--
-- KEYS[1]: T:sem:holders
-- ARGV[1]: permit id   ARGV[2]: new lease in ms, from now
--
-- Returns 1 when renewed, 0 when the permit is no longer held (released, or
-- its lease ended).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline or tonumber(deadline) <= now then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl * 2 then
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
return 1
