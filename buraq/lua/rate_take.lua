-- Take start slots from a pipeline's rate limit (GCRA paced without burst, by Redis's clock).
-- KEYS[1] the rate key: the time (us) of the next free slot
-- ARGV[1] emission interval in microseconds (per / tasks), ARGV[2] slots wanted,
-- ARGV[3] look-ahead in microseconds: how far ahead of now a slot may be handed out
-- Slots are consecutive, one interval apart; the caller starts each no sooner than its time.
-- Returns {slots granted, microseconds from now to the first slot}; with 0 slots, the
-- microseconds to wait before asking again.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local horizon = now_us + tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now_us then
  tat = now_us
end
if tat > horizon then
  return {0, math.ceil(tat - horizon)}
end
local slots = math.min(tonumber(ARGV[2]), math.floor((horizon - tat) / interval) + 1)
local next_free = tat + slots * interval
-- Integer microseconds as a string: Lua would print a large float in exponent form.
redis.call('SET', KEYS[1], string.format('%d', next_free), 'PX', math.ceil((next_free - now_us) / 1000) + 60000)
return {slots, math.floor(tat - now_us)}
