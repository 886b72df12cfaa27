-- Keep a live worker's permits: push each one's expiry a lease past now.
-- KEYS[1] permits sorted set, ARGV[1] lease in ms, ARGV[2..] permit names this worker holds
-- Returns the names that had already expired (and are not renewed: the cap may have been reused).
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lost = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now_ms then
    redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
if #ARGV > 1 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
end
return lost
