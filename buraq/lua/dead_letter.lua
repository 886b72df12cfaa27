-- Write an entry to the dead-letter stream and acknowledge it, in one step.
-- The DLQ write comes first: if it fails (e.g. OOM), the entry stays pending, never lost.
-- KEYS[1] stream, KEYS[2] dead-letter stream
-- ARGV[1] group, ARGV[2] entry id, ARGV[3..] field/value pairs of the DLQ entry
-- Returns 1, or 0 when the entry was no longer pending (someone else finished it).
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return 0
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
