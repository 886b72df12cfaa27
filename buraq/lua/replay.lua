-- Put dead-lettered tasks back on their stream, keeping their task ids, and remove them from the DLQ.
-- KEYS[1] stream, KEYS[2] dead-letter stream; ARGV: DLQ entry ids
-- Each replayed task starts again as attempt 1 with a fresh retry budget. An entry without a task
-- id or payload (say, a malformed delayed-set member) is left where it is.
-- Returns {replayed ids, skipped ids} (DLQ entry ids).
local replayed, skipped = {}, {}
for _, dead in ipairs(ARGV) do
  local rows = redis.call('XRANGE', KEYS[2], dead, dead)
  if #rows == 1 then
    local fields = rows[1][2]
    local id, payload, schedule = nil, nil, nil
    for i = 1, #fields, 2 do
      if fields[i] == 'id' then id = fields[i + 1] end
      if fields[i] == 'payload' then payload = fields[i + 1] end
    end
    if id and payload and id ~= '?' then
      redis.call('XADD', KEYS[1], '*', 'id', id, 'payload', payload)
      redis.call('XDEL', KEYS[2], dead)
      replayed[#replayed + 1] = dead
    else
      skipped[#skipped + 1] = dead
    end
  end
end
return {replayed, skipped}
