-- fanout_complete: publish a generation's outcome and end its lease, in one
-- step, so that no joiner can see the lease gone and the result missing.
--
-- KEYS[1]: T:fan      the leader's lease
-- KEYS[2]: T:fan:res  where the result envelope is kept
-- KEYS[3]: T:fan:ch   the key's shard channel
-- ARGV[1]: the generation id
-- ARGV[2]: the outcome envelope
-- ARGV[3]: how long the result stays readable, in ms
--
-- When this generation still leads (or nobody does), keeps the envelope as
-- the result and ends the lease. When another generation took over (this
-- one's lease lapsed), leaves the result key to it. Publishes the envelope
-- either way: whoever waits may take it. Returns 1 when this generation
-- still led, else 0.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] or not cur then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  if cur then
    redis.call('DEL', KEYS[1])
  end
end
redis.call('SPUBLISH', KEYS[3], ARGV[2])
if cur == ARGV[1] then
  return 1
end
return 0
