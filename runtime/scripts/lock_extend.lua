-- lock_extend: renew the lease of locks of one slot, all or nothing.
--
-- KEYS: lock1, lock2, ...
-- ARGV[1]: owner id
-- ARGV[2]: new lease in ms, counted from now
--
-- Returns 1 when the owner held every lock and each lease was renewed, or 0
-- when any lock is no longer the owner's; then nothing changed. (A repeat
-- renews again: harmless.)
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  local sp = v and string.find(v, ' ', 1, true)
  if not sp or string.sub(v, sp + 1) ~= ARGV[1] then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
