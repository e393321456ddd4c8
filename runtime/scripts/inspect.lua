-- inspect: read what one user key holds, writing nothing (Client.Inspect and
-- the dlock command). It calls no writing command (TestInspect_writesNothing
-- counts them); it carries no no-writes flag, which dlocktest's in-process
-- server could not compile.
--
-- KEYS[1]: T:lock    KEYS[2]: T:sem    KEYS[3]: T:fan
-- ARGV[1]: the most semaphore members to return
--
-- Returns {seconds, microseconds (the server's TIME),
--          the lock's value or false, its PTTL,
--          the semaphore's first members and their scores, flat, by score,
--          its number of members,
--          the fanout's value (its first 512 bytes) or false, its length,
--          its PTTL}
local t = redis.call('TIME')
local lock = redis.call('GET', KEYS[1])
local sem = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local fan = redis.call('GET', KEYS[3])
local fanLen = 0
if fan then
  fanLen = #fan
  fan = string.sub(fan, 1, 512)
end
return {tonumber(t[1]), tonumber(t[2]), lock, redis.call('PTTL', KEYS[1]),
  sem, redis.call('ZCARD', KEYS[2]), fan, fanLen, redis.call('PTTL', KEYS[3])}
