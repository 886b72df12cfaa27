-- Park a new task in the delayed set, due after a delay measured by Redis's clock, or at a time.
-- KEYS[1] delayed set; ARGV[1] 'delay' or 'at', ARGV[2] ms, ARGV[3] member (fields as netstrings)
-- Returns the due time in ms (Redis clock).
local due = tonumber(ARGV[2])
if ARGV[1] == 'delay' then
  local now = redis.call('TIME')
  due = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + due
end
redis.call('ZADD', KEYS[1], due, ARGV[3])
return due
