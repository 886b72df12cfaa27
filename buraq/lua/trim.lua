-- Trim entries that every consumer group has been handed and has acknowledged; never one still needed.
-- KEYS[1] stream; ARGV[1] the most entries to remove in this call. Returns the number removed.
-- Per group the floor is its oldest pending entry, or with nothing pending its last-delivered-id
-- (that one entry is kept: harmless). XTRIM MINID keeps every entry at or above the lowest floor,
-- so no pending entry and no entry a group has yet to read is removed. Approximate (~) trimming
-- frees whole stream nodes only, which is cheap; the few entries left over go on a later pass.
-- LIMIT bounds how long one call blocks Redis (its default under ~ is only 100 nodes' worth).
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function lower(a, b)
  if a == nil then return b end
  local am, as = parse(a)
  local bm, bs = parse(b)
  if bm < am or (bm == am and bs < as) then return b end
  return a
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local summary = redis.call('XPENDING', KEYS[1], info['name'])
  floor = lower(floor, summary[1] > 0 and summary[2] or info['last-delivered-id'])
end
if floor == nil or floor == '0-0' then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', floor, 'LIMIT', ARGV[1])
