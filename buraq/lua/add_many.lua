-- Add many entries to one stream in one command (the batch enqueue path).
-- KEYS[1] stream; ARGV: for each entry, its field count N, then N field/value pairs.
-- One command instead of one XADD each saves the client packing and parsing a reply per entry.
local ids = {}
local i = 1
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  local args = {'XADD', KEYS[1], '*'}
  for j = i + 1, i + 2 * count do
    args[#args + 1] = ARGV[j]
  end
  ids[#ids + 1] = redis.call(unpack(args))
  i = i + 1 + 2 * count
end
return ids
