-- Take over pending entries whose worker is gone, or that sat idle past the lease.
-- KEYS[1] stream, KEYS[2] consumers hash (name -> lease expiry in ms, Redis time)
-- ARGV[1] group, ARGV[2] this consumer, ARGV[3] lease in ms, ARGV[4] cursor ('-' to start over),
-- ARGV[5] pending entries to look at, ARGV[6] most entries to take
-- Returns {next cursor ('-' when the scan reached the end), taken ids, their delivery counts,
-- the XCLAIM reply (entries that still exist; a trimmed one is dropped from the PEL by Redis)}.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease, scan, limit = tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6])
local start = '-'
if ARGV[4] ~= '-' then start = '(' .. ARGV[4] end
local rows = redis.call('XPENDING', KEYS[1], ARGV[1], start, '+', scan)
local alive = {}
local take, deliveries = {}, {}
local last = nil
for _, row in ipairs(rows) do
  if #take >= limit then break end
  last = row[1]
  local owner, idle = row[2], tonumber(row[3])
  local live = alive[owner]
  if live == nil then
    local expiry = redis.call('HGET', KEYS[2], owner)
    live = expiry ~= false and tonumber(expiry) > now_ms
    alive[owner] = live
  end
  if idle > lease or (not live and owner ~= ARGV[2]) then
    take[#take + 1] = row[1]
    deliveries[#deliveries + 1] = tonumber(row[4]) + 1
  end
end
local claimed = {}
if #take > 0 then
  claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(take))
end
local cursor = '-'
if last and (#take >= limit or #rows == scan) then
  cursor = last
end
if cursor == '-' then
  -- A full pass is done: forget consumers whose lease ran out and who hold nothing.
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) <= now_ms and #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, all[i]) == 0 then
      redis.call('HDEL', KEYS[2], all[i])
      redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], all[i])
    end
  end
end
return {cursor, take, deliveries, claimed}
