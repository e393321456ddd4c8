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
--          A permit id ends in "/<limit>": the limit its holder asked for.
-- ARGV[1]: waiter id      ARGV[2]: permit id ("<id>/<limit>")
-- ARGV[3]: limit          ARGV[4]: lease in ms        ARGV[5]: waiter lease ms
-- ARGV[6]: "1" to queue ("0": TryAcquire, which never queues and never
--          overtakes)
-- ARGV[7]: T:sem:ch, the shard channel
-- ARGV[8]: the grace, in ms, of a waiter a permit is offered to (below)
--
-- Purges holders and waiters whose leases ended. The limit in force is the
-- smallest of the caller's and the current holders' (so that a deploy that
-- changes a limit never lets more hold than any of them asked for). A
-- queued waiter is granted when its rank in the queue is below the number
-- of free permits. Idempotent per permit id: a repeat of a granted attempt
-- (a client retry after a lost reply) returns the same grant.
--
-- Offers: when permits are free for waiters ahead of the caller (or left
-- free after a grant), the first of them are offered the permits: their
-- place lasts only the grace from now (a live waiter answers at once and
-- renews it; a dead one's place lapses then, and the waiter behind takes
-- its turn), and "free <t1> <t2>" is published: waiters with tickets up to
-- t1 should look again now, those up to t2 after the grace.
--
-- Returns {1, lease ms, other} when granted, else {0, ms until it is
-- worth looking again (-1: nothing to wait for), the waiter's ticket (0
-- when not queued), the number of waiters queued, other}; other is a limit
-- a current holder asked for that differs from the caller's (0: none).
local function n(x) return string.format('%.0f', x) end
local B = 1e13
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k, ch = KEYS[1], ARGV[7]
local limit, ttl, qttl, grace = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[8])
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

-- The live holders, the smallest limit among them and the caller's, and
-- a holder's limit that differs from the caller's.
local holders = redis.call('ZRANGEBYSCORE', k, '(0', '(' .. n(B))
local inForce, other = limit, 0
for _, m in ipairs(holders) do
  local hl = tonumber(string.match(m, '/(%d+)$'))
  if hl and hl ~= limit then
    other = hl
    if hl < inForce then inForce = hl end
  end
end

-- offer offers free permits to the first waiters (see above).
local function offer(free)
  local qs = redis.call('ZRANGEBYSCORE', k, n(B), '(' .. n(2 * B), 'WITHSCORES', 'LIMIT', 0, 2 * free)
  local t1, t2
  for i = 1, #qs, 2 do
    local ticket = tonumber(qs[i + 1]) - B
    if (i - 1) / 2 < free then
      redis.call('ZADD', k, 'LT', n(2 * B + now + grace), 'l' .. string.sub(qs[i], 2))
      t1 = ticket
    end
    t2 = ticket
  end
  if t1 then
    redis.call('SPUBLISH', ch, 'free ' .. n(t1) .. ' ' .. n(t2))
  end
end

local mine = tonumber(redis.call('ZSCORE', k, h))
if mine and mine > 0 then -- a repeat of a granted attempt
  redis.call('ZADD', k, n(now + ttl), h)
  redis.call('ZREM', k, q, l)
  keep()
  return {1, ttl, other}
end

local free = inForce - #holders
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
    offer(free - 1)
  end
  return {1, ttl, other}
end
local wait = -1
local first = redis.call('ZRANGEBYSCORE', k, '(0', '(' .. n(B), 'WITHSCORES', 'LIMIT', 0, 1)
if first[2] then
  wait = tonumber(first[2]) - now
end
if free > 0 and ARGV[6] == '1' then
  -- Permits are free for waiters ahead of the caller: offer them, and look
  -- again once a dead one's place would have lapsed.
  offer(free)
  wait = grace
end
return {0, wait, ticket, redis.call('ZCOUNT', k, n(B), '(' .. n(2 * B)), other}
