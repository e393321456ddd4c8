-- lock_acquire: take one or more locks of one slot, all or nothing, each with
-- a fencing token.
--
-- KEYS: lock1, lock2, ...   (one key per lock: no other key is touched, so
--       a single lock works in every state of a Cluster slot migration)
-- ARGV[1]: owner id (unique per acquisition attempt)
-- ARGV[2]: lease in ms
--
-- A lock key holds "<token> <owner>" while held (its TTL is the lease), and
-- "<token> -<owner>" for a while after its owner released it (so the last
-- token and the release outlive the lease). Any other value (a foreign
-- key) counts as held by somebody else.
--
-- Idempotent per owner: a repeat of the same attempt (a client retry after
-- a lost reply) finds its own owner id and returns the same grant, with the
-- same tokens, its lease renewed.
--
-- Returns, when every lock was free (or already the owner's) and is now
-- held by the owner, its token: for one key the token itself (an integer
-- reply), for several {1, token1, token2, ...}. Else {0, pttl, i1, i2, ...}:
-- the 1-based positions of the locks that others hold, and the smallest
-- remaining lease among them in ms (-1 when none of them has a lease).
--
-- Written for the one-key case, which is nearly every call: a grant of one
-- key builds no reply table, and no list of held keys is made unless one
-- is held (each table costs the server's single thread time on every
-- acquire; PROTOCOL.md, Cost on the server). Tokens are written with
-- '%.0f', exact for every whole number below 2^53 on any word size ('%d'
-- goes through a C long: 32 bits on 32-bit builds).
local owner, n = ARGV[1], #KEYS
local vals, held, wait = {}, nil, -1
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  vals[i] = v
  if v then
    local sp = string.find(v, ' ', 1, true)
    local who = sp and string.sub(v, sp + 1) or nil
    if who ~= owner and (who == nil or string.byte(who, 1) ~= 45) then -- 45: '-'
      held = held or {}
      held[#held + 1] = i
      local t = redis.call('PTTL', KEYS[i])
      if t >= 0 and (wait < 0 or t < wait) then wait = t end
    end
  end
end
if held then
  return {0, wait, unpack(held)}
end
-- A token is the server's clock in microseconds, or one more than the
-- key's last token when that is larger. So tokens grow per key even after
-- the key expired, and even across a failover that lost the last writes
-- (as long as the new primary's clock is not behind the old one's by more
-- than the time between the two grants).
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local out
for i = 1, n do
  local v, token, last = vals[i], nil, 0
  if v then
    local sp = string.find(v, ' ', 1, true)
    if sp then
      last = tonumber(string.sub(v, 1, sp - 1)) or 0
      if string.sub(v, sp + 1) == owner then token = last end
    end
  end
  if not token then
    token = last + 1
    if now > token then token = now end
  end
  redis.call('SET', KEYS[i], string.format('%.0f', token) .. ' ' .. owner, 'PX', ARGV[2])
  if n == 1 then return token end
  out = out or {1}
  out[i + 1] = token
end
return out
