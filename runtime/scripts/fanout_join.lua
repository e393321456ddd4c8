-- fanout_join: join a fanout of one key, atomically: take the result if one
-- is there, else lead a new generation, else wait for the current leader.
--
-- KEYS[1]: T:fan  one key for the whole state of the key's fanout:
--          "0 <gen>"   generation gen leads (TTL: its lease)
--          "0 -<gen>"  gen stepped down without an outcome: free
--          "=<envelope>" the last result (TTL: ResultTTL)
--          "!<gen> <envelope>" the error of generation gen (TTL: ResultTTL),
--                      for the callers that waited on gen only
-- ARGV[1]: a new generation id
-- ARGV[2]: the leader's lease in ms
-- ARGV[3]: "1" when the caller may lead
-- ARGV[4]: the generation the caller waited on, or ""
--
-- Returns {2, envelope} when a result is there (or the error of the
-- generation the caller waited on); {1} when the caller now
-- leads generation ARGV[1] (also on a repeat of the same join); {0, pttl,
-- gen} when generation gen leads (pttl: the rest of its lease in ms; gen ""
-- for a foreign value), or nobody does and the caller may not lead (pttl -2).
local v = redis.call('GET', KEYS[1])
if v then
  local c = string.byte(v, 1)
  local sp = string.find(v, ' ', 1, true)
  if c == 61 then -- 61: '='
    return {2, string.sub(v, 2)}
  elseif c == 33 then -- 33: '!'
    if sp and ARGV[4] ~= '' and string.sub(v, 2, sp - 1) == ARGV[4] then
      return {2, string.sub(v, sp + 1)}
    end
  else
    local who = sp and string.sub(v, sp + 1) or ''
    if who == ARGV[1] then
      return {1}
    end
    if string.byte(who, 1) ~= 45 then -- 45: '-'; else the leader stepped down
      return {0, redis.call('PTTL', KEYS[1]), who}
    end
  end
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], '0 ' .. ARGV[1], 'PX', ARGV[2])
  return {1}
end
return {0, -2, ''}
