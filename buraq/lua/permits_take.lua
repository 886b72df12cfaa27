-- Take up to #ARGV-2 concurrency permits, each expiring a lease from now unless refreshed.
-- KEYS[1] permits sorted set (member -> expiry ms, Redis time)
-- ARGV[1] the pipeline's concurrency, ARGV[2] lease in ms, ARGV[3..] names for the permits wanted
-- Expired permits (their worker died or went silent for a lease) are dropped first.
-- Returns the names granted, in order.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local granted = {}
for i = 3, #ARGV do
  if #granted >= free then
    break
  end
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[i])
  granted[#granted + 1] = ARGV[i]
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return granted
