-- Take one start from a pipeline's rate limit (GCRA without burst, by Redis's clock).
-- KEYS[1] the rate key: the theoretical arrival time (us) of the next allowed start
-- ARGV[1] emission interval in microseconds (per / tasks)
-- Returns 0 when the start is granted, else the microseconds to wait before asking again.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > now_us then
  return math.ceil(tat - now_us)
end
-- Integer microseconds as a string: Lua would print a large float in exponent form.
redis.call('SET', KEYS[1], string.format('%d', now_us + interval), 'PX', math.ceil(interval / 1000) + 60000)
return 0
