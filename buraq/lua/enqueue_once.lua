-- Enqueue a task unless its key was seen within the window: the key and the entry, never one without the other.
-- KEYS[1] stream, KEYS[2] dedup key (same hash tag as the stream)
-- ARGV[1] window in ms, ARGV[2..] the entry's field/value pairs
-- Returns {1, new entry id} or {0, the entry id the key produced first}.
local first = redis.call('GET', KEYS[2])
if first then
  return {0, first}
end
local fields = {}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {1, id}
