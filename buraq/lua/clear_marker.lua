-- Delete an `overlap: skip` marker, but only if it still names the task that ended.
-- KEYS[1] marker; ARGV[1] task id
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
