-- sem_acquire: try to take one of `limit` permits, first come first served.
--
-- KEYS[1]: T:sem:holders  ZSET permit id -> lease deadline (server ms)
-- KEYS[2]: T:sem:queue    ZSET waiter id -> ticket (arrival order)
-- KEYS[3]: T:sem:qlease   ZSET waiter id -> waiter lease deadline (server ms)
-- KEYS[4]: T:sem:seq      ticket counter
-- KEYS[5]: T:sem:ch       shard channel: "free" when a permit may be had
-- ARGV[1]: waiter id      ARGV[2]: permit id        ARGV[3]: limit
-- ARGV[4]: lease in ms    ARGV[5]: waiter lease ms  ARGV[6]: "1" to queue
--          ("0": TryAcquire, which never queues and never overtakes)
--
-- Purges holders and waiters whose leases ended. A queued waiter is granted
-- when a permit is free for it: its rank in the queue is below the number
-- of free permits. Returns {1, lease ms} when granted, else {0, ms until the
-- earliest holder's lease ends (-1: no holder), the waiter's ticket (0 when
-- not queued), the number of waiters queued}. When permits stay free and others wait, publishes
-- "free <ticket>": waiters with tickets up to that one should look again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holders, queue, qlease = KEYS[1], KEYS[2], KEYS[3]
local waiter, permit = ARGV[1], ARGV[2]
local limit, ttl, qttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', qlease, '-inf', now, 'LIMIT', 0, 1000)
for _, w in ipairs(dead) do
  redis.call('ZREM', queue, w)
  redis.call('ZREM', qlease, w)
end

local free = limit - redis.call('ZCARD', holders)
local granted = false
local ticket = 0
if ARGV[6] == '1' then
  ticket = tonumber(redis.call('ZSCORE', queue, waiter))
  if not ticket then
    ticket = redis.call('INCR', KEYS[4])
    redis.call('ZADD', queue, ticket, waiter)
  end
  redis.call('ZADD', qlease, now + qttl, waiter)
  if free > 0 and redis.call('ZRANK', queue, waiter) < free then
    redis.call('ZREM', queue, waiter)
    redis.call('ZREM', qlease, waiter)
    granted = true
  end
elseif free > redis.call('ZCARD', queue) then
  granted = true
end

if granted then
  redis.call('ZADD', holders, now + ttl, permit)
end

-- Keep the keys as long as something in them may still matter.
local keep = math.max(ttl, qttl) * 2
for i = 1, 4 do
  local p = redis.call('PTTL', KEYS[i])
  if p ~= -2 and p < keep then
    redis.call('PEXPIRE', KEYS[i], keep)
  end
end

if granted then
  free = free - 1
  if free > 0 then
    local q = redis.call('ZRANGE', queue, free - 1, free - 1, 'WITHSCORES')
    if not q[2] then q = redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES') end
    if q[2] then redis.call('SPUBLISH', KEYS[5], 'free ' .. q[2]) end
  end
  return {1, ttl}
end
local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
local wait = -1
if first[2] then
  wait = tonumber(first[2]) - now
end
return {0, wait, ticket, redis.call('ZCARD', queue)}
