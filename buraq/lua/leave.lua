-- A consumer leaves: it is no longer alive, so whatever it still holds can be taken over at once.
-- KEYS[1] stream, KEYS[2] consumers hash; ARGV[1] group, ARGV[2] consumer
-- It is removed from the group now if it holds nothing (DELCONSUMER would orphan its entries);
-- otherwise its lease is marked expired, and the reclaim pass that finds it empty removes it later.
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
redis.call('HSET', KEYS[2], ARGV[2], '0:0')
return 0
