-- Move delayed entries whose time has come into the stream, judged by Redis's clock.
-- KEYS[1] stream, KEYS[2] delayed set; ARGV[1] most entries to move
-- Returns {moved, ms until the next one is due or -1 when none wait}.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
-- A member is the entry's fields as netstrings ("<length>:<bytes>"), so any bytes survive.
local function fields_of(member)
  local fields, pos = {}, 1
  while pos <= #member do
    local colon = string.find(member, ':', pos, true)
    local size = tonumber(string.sub(member, pos, colon - 1))
    fields[#fields + 1] = string.sub(member, colon + 1, colon + size)
    pos = colon + size + 1
  end
  return fields
end
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', unpack(fields_of(member)))
  redis.call('ZREM', KEYS[2], member)
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = -1
if head[2] then
  wait = math.max(0, tonumber(head[2]) - now_ms)
end
return {#due, wait}
