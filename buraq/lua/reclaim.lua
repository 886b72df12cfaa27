-- Take over pending entries whose worker is gone, or that sat idle past their owner's lease.
-- KEYS[1] stream, KEYS[2] consumers hash (name -> "<lease expiry ms>:<lease ms>", Redis time)
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
local leases = {}  -- owner -> its lease in ms while alive, false when dead
local take, deliveries = {}, {}
local last = nil
for _, row in ipairs(rows) do
  if #take >= limit then break end
  last = row[1]
  local owner, idle = row[2], tonumber(row[3])
  local owner_lease = leases[owner]
  if owner_lease == nil then
    local value = redis.call('HGET', KEYS[2], owner)
    owner_lease = false
    if value then
      local expiry, its_lease = string.match(value, '^(%d+):(%d+)$')
      if expiry and tonumber(expiry) > now_ms then
        owner_lease = tonumber(its_lease)  -- judge its entries by its own heartbeat rate
      end
    end
    leases[owner] = owner_lease
  end
  if owner == ARGV[2] then
    owner_lease = lease
  end
  local wanted = (owner_lease and idle > owner_lease) or (not owner_lease and owner ~= ARGV[2])
  if wanted and owner_lease and #redis.call('XRANGE', KEYS[1], row[1], row[1]) == 0 then
    -- Deleted from the stream while its live owner runs it: heartbeats leave it alone so its
    -- pending row survives for the owner's ack, retry or DLQ move. Taking it would drop that row.
    wanted = false
  end
  if wanted then
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
    local expiry = tonumber(string.match(all[i + 1], '^(%d+)')) or 0
    if expiry <= now_ms and #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, all[i]) == 0 then
      redis.call('HDEL', KEYS[2], all[i])
      redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], all[i])
    end
  end
end
return {cursor, take, deliveries, claimed}
