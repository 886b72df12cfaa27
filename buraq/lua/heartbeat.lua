-- Say this consumer is alive, and keep its running entries from looking idle.
-- KEYS[1] stream, KEYS[2] consumers hash (name -> "<lease expiry ms>:<lease ms>", Redis time)
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] lease in ms, ARGV[4..] ids of entries it is running
-- Only entries this consumer still owns, and that still exist, are refreshed (XCLAIM ... JUSTID
-- resets their idle time without counting a delivery; on a deleted entry it would also drop the
-- pending row, and with it the running task's retry). Returns the ids another consumer now owns.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[2], (now_ms + tonumber(ARGV[3])) .. ':' .. ARGV[3])
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
local lost = {}
for i = 4, #ARGV do
  local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #row == 1 then
    if row[1][2] ~= ARGV[2] then
      lost[#lost + 1] = ARGV[i]
    elseif #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) == 1 then
      claim[#claim + 1] = ARGV[i]
    end
  end
end
if #claim > 5 then
  -- (unpack must come last in an argument list, or Lua passes only its first value)
  claim[#claim + 1] = 'JUSTID'
  redis.call(unpack(claim))
end
return lost
