-- Fire a schedule's due ticks, exactly once across any number of schedulers.
-- The schedule's "last fired" mark is compared and set in this one step: a scheduler whose
-- view is stale (another one fired first) changes nothing and plans again.
-- KEYS[1] stream, KEYS[2] schedules hash (name -> last tick handled, ms; name:fired -> last tick
-- enqueued), KEYS[3] overlap marker key
-- ARGV[1] schedule name, ARGV[2] expected last mark ('' when none yet), ARGV[3] new last mark,
-- ARGV[4] overlap ('allow' or 'skip'), ARGV[5] marker expiry in ms, ARGV[6] encoded payload,
-- ARGV[7..] ticks to fire (ms), each becoming a task with id NAME@TICK
-- Returns {status, fired, skipped}: status 'ok', 'stale' or 'early' (Redis's clock is behind).
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if tonumber(ARGV[3]) > now_ms then
  return {'early', 0, 0}
end
local last = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if last ~= ARGV[2] then
  return {'stale', 0, 0}
end
local fired, skipped = 0, 0
for i = 7, #ARGV do
  if ARGV[4] == 'skip' and redis.call('EXISTS', KEYS[3]) == 1 then
    skipped = skipped + 1
  else
    local id = ARGV[1] .. '@' .. ARGV[i]
    redis.call('XADD', KEYS[1], '*', 'id', id, 'payload', ARGV[6], 'schedule', ARGV[1], 'due', ARGV[i])
    if ARGV[4] == 'skip' then
      redis.call('SET', KEYS[3], id, 'PX', tonumber(ARGV[5]))
    end
    fired = fired + 1
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if fired > 0 then
  -- The mark also moves without firing (first sight, skipped ticks); this one records real fires.
  redis.call('HSET', KEYS[2], ARGV[1] .. ':fired', ARGV[#ARGV])
end
return {'ok', fired, skipped}
