-- fanout_complete: publish a generation's outcome and end its lease, in one
-- step, so that no joiner can see the lease gone and the result missing.
--
-- KEYS[1]: T:fan      the fanout's state (see fanout_join)
-- ARGV[1]: the generation id
-- ARGV[2]: the outcome envelope (it names its generation)
-- ARGV[3]: how long a result stays readable, in ms
-- ARGV[4]: "1" to keep the outcome as the result for every joiner (a job's
--          value), "0" to keep it for the callers that waited on this
--          generation only (a job's error: it reaches the callers of its
--          run only)
-- ARGV[5]: T:fan:ch   the key's shard channel
--
-- Only a generation that still leads publishes: when its lease lapsed, or
-- another generation took over, its outcome is dropped (its callers join
-- again), so that no caller receives an outcome of an earlier run than the
-- one it waited for. Returns 1 when published (also on a repeat of the same
-- call), else 0.
local kept = '=' .. ARGV[2]
if ARGV[4] ~= '1' then
  kept = '!' .. ARGV[1] .. ' ' .. ARGV[2]
end
local v = redis.call('GET', KEYS[1])
if v ~= '0 ' .. ARGV[1] then
  if v == kept then
    return 1
  end
  return 0
end
redis.call('SET', KEYS[1], kept, 'PX', ARGV[3])
redis.call('SPUBLISH', ARGV[5], ARGV[2])
return 1
