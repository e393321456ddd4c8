-- sem_acquire: try to take one of `limit` permits, first come first served.
--
-- KEYS[1]: T:sem  one sorted set for the whole semaphore (one key, so that
--          it works in every state of a Cluster slot migration), its
--          members in disjoint score ranges (B = 10^13; times are the
--          server's clock in ms):
--            "h<permit>"  a holder:          score = its lease deadline (0, B)
--            "h<permit>"  released lately:   score = release time - B (-B, 0)
--            "q<waiter>"  a queued waiter:   score = B + its ticket
--            "l<waiter>"  a waiter's lease:  score = 2B + its deadline
--            "s"          the ticket counter: score = 3B + last ticket
-- ARGV[1]: waiter id      ARGV[2]: permit id        ARGV[3]: limit
-- ARGV[4]: lease in ms    ARGV[5]: waiter lease ms  ARGV[6]: "1" to queue
--          ("0": TryAcquire, which never queues and never overtakes)
-- ARGV[7]: T:sem:ch, the shard channel
--
-- Purges holders and waiters whose leases ended. A queued waiter is granted
-- when a permit is free for it: its rank in the queue is below the number
-- of free permits. Idempotent per permit id: a repeat of a granted attempt
-- (a client retry after a lost reply) returns the same grant. Returns
-- {1, lease ms} when granted, else {0, ms until the earliest holder's lease
-- ends (-1: no holder), the waiter's ticket (0 when not queued), the number
-- of waiters queued}. When permits stay free and others wait, publishes
-- "free <ticket>": waiters with tickets up to that one should look again.
local function n(x) return string.format('%.0f', x) end
local B = 1e13
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k, ch = KEYS[1], ARGV[7]
local limit, ttl, qttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local h, q, l = 'h' .. ARGV[2], 'q' .. ARGV[1], 'l' .. ARGV[1]

redis.call('ZREMRANGEBYSCORE', k, 0, n(now))
redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. n(now - 60000 - B))
local dead = redis.call('ZRANGEBYSCORE', k, n(2 * B), n(2 * B + now), 'LIMIT', 0, 1000)
for _, m in ipairs(dead) do
  redis.call('ZREM', k, m, 'q' .. string.sub(m, 2))
end

local function keep()
  local d = math.max(ttl, qttl) * 2
  local p = redis.call('PTTL', k)
  if p ~= -2 and p < d then
    redis.call('PEXPIRE', k, d)
  end
end

local function announce(free)
  local qs = redis.call('ZRANGEBYSCORE', k, n(B), '(' .. n(2 * B), 'WITHSCORES', 'LIMIT', free - 1, 1)
  if not qs[2] then
    qs = redis.call('ZREVRANGEBYSCORE', k, '(' .. n(2 * B), n(B), 'WITHSCORES', 'LIMIT', 0, 1)
  end
  if qs[2] then
    redis.call('SPUBLISH', ch, 'free ' .. n(tonumber(qs[2]) - B))
  end
end

local mine = tonumber(redis.call('ZSCORE', k, h))
if mine and mine > 0 then -- a repeat of a granted attempt
  redis.call('ZADD', k, n(now + ttl), h)
  redis.call('ZREM', k, q, l)
  keep()
  return {1, ttl}
end

local free = limit - redis.call('ZCOUNT', k, '(0', '(' .. n(B))
local granted = false
local ticket = 0
if ARGV[6] == '1' then
  local s = tonumber(redis.call('ZSCORE', k, q))
  if s then
    ticket = s - B
  else
    local seq = (tonumber(redis.call('ZSCORE', k, 's')) or 3 * B) + 1
    redis.call('ZADD', k, n(seq), 's')
    ticket = seq - 3 * B
    redis.call('ZADD', k, n(B + ticket), q)
  end
  redis.call('ZADD', k, n(2 * B + now + qttl), l)
  if free > 0 and redis.call('ZCOUNT', k, n(B), '(' .. n(B + ticket)) < free then
    redis.call('ZREM', k, q, l)
    granted = true
  end
elseif free > redis.call('ZCOUNT', k, n(B), '(' .. n(2 * B)) then
  granted = true
end

if granted then
  redis.call('ZADD', k, n(now + ttl), h)
end
keep()

if granted then
  if free > 1 then
    announce(free - 1)
  end
  return {1, ttl}
end
local first = redis.call('ZRANGEBYSCORE', k, '(0', '(' .. n(B), 'WITHSCORES', 'LIMIT', 0, 1)
local wait = -1
if first[2] then
  wait = tonumber(first[2]) - now
end
return {0, wait, ticket, redis.call('ZCOUNT', k, n(B), '(' .. n(2 * B))}
