-- Move a failed entry to the delayed set and acknowledge it, in one step.
-- KEYS[1] stream, KEYS[2] delayed set
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] delay in ms, ARGV[4] member: the fields as netstrings
-- Returns 1, or 0 when the entry was no longer pending (someone else finished it).
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return 0
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[3]), ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
