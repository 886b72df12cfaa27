-- Move delayed entries whose time has come into the stream, judged by Redis's clock.
-- KEYS[1] stream, KEYS[2] delayed set, KEYS[3] dead-letter stream; ARGV[1] most entries to move
-- Returns {moved, ms until the next one is due or -1 when none wait, malformed members dead-lettered}.
-- A member is the entry's fields as netstrings ("<length>:<bytes>"), so any bytes survive. One a
-- producer wrote wrongly goes to the dead-letter stream whole, rather than block the set forever.
local function fields_of(member)
  local fields, pos = {}, 1
  while pos <= #member do
    local colon = string.find(member, ':', pos, true)
    if not colon then return nil end
    local size = tonumber(string.sub(member, pos, colon - 1))
    if not size or size < 0 or colon + size > #member then return nil end
    fields[#fields + 1] = string.sub(member, colon + 1, colon + size)
    pos = colon + size + 1
  end
  if #fields == 0 or #fields % 2 == 1 then return nil end
  return fields
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]), 'WITHSCORES')
local moved, bad = 0, 0
for i = 1, #due, 2 do
  local fields = fields_of(due[i])
  if fields then
    fields[#fields + 1] = 'due'  -- when it was due (ms, Redis clock): lateness = start - due
    fields[#fields + 1] = due[i + 1]
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    moved = moved + 1
  else
    redis.call('XADD', KEYS[3], '*', 'reason', 'bad_delayed_member', 'error_type', 'Undecodable',
      'error', 'a delayed-set member is not a list of netstring fields', 'payload', due[i], 'due', due[i + 1],
      'attempts', '0')
    bad = bad + 1
  end
  redis.call('ZREM', KEYS[2], due[i])
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = -1
if head[2] then
  wait = math.max(0, tonumber(head[2]) - now_ms)
end
return {moved, wait, bad}
