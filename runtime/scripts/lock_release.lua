-- lock_release: release the owner's locks of one slot and wake their waiters.
--
-- KEYS: lock1, lock2, ...
-- ARGV[1]: owner id
-- ARGV[2]: how long a released key keeps its last token, in ms
-- ARGV[3], ARGV[4], ...: the shard channel of each lock, in KEYS' order
--       (channels are not keys: listed in KEYS they would make a Cluster
--       node answer TRYAGAIN while the slot migrates)
--
-- Each lock the owner still holds becomes "<token> -<owner>" (free, keeping
-- its last token) and is announced on its channel. Locks held by others are
-- left alone. Idempotent: a repeat (a client retry after a lost reply) finds
-- "-<owner>" and counts the lock as released again. Returns how many locks
-- the owner released.
local n = 0
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  local sp = v and string.find(v, ' ', 1, true)
  if sp then
    local who = string.sub(v, sp + 1)
    if who == ARGV[1] then
      redis.call('SET', KEYS[i], string.sub(v, 1, sp) .. '-' .. ARGV[1], 'PX', ARGV[2])
      redis.call('SPUBLISH', ARGV[i + 2], 'released')
      n = n + 1
    elseif who == '-' .. ARGV[1] then
      n = n + 1
    end
  end
end
return n
