-- fanout_join: join a fanout of one key, atomically: take the result if one
-- is there, else lead a new generation, else wait for the current leader.
--
-- KEYS[1]: T:fan      the leader's lease; its value is the generation id
-- KEYS[2]: T:fan:res  the last result envelope, kept for a short while
-- ARGV[1]: a new generation id
-- ARGV[2]: the leader's lease in ms
-- ARGV[3]: "1" when the caller may lead
--
-- Returns {2, envelope} when a result is there; {1} when the caller now
-- leads generation ARGV[1]; {0, pttl} when somebody else leads (pttl: the
-- rest of its lease in ms), or nobody does and the caller may not lead
-- (pttl -2).
local res = redis.call('GET', KEYS[2])
if res then
  return {2, res}
end
if ARGV[3] == '1' and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
return {0, redis.call('PTTL', KEYS[1])}
