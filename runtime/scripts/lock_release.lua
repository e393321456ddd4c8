-- lock_release: release the owner's locks of one slot and wake their waiters.
--
-- KEYS: lock1, channel1, lock2, channel2, ...
-- ARGV[1]: owner id
--
-- Deletes each lock the owner still holds and announces it on the lock's
-- shard channel. Locks held by others are left alone. Returns how many locks
-- were released.
local n = 0
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('SPUBLISH', KEYS[i + 1], 'released')
    n = n + 1
  end
end
return n
