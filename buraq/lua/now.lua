-- Redis's clock, read on the node that holds the pipeline's keys.
-- KEYS[1] any key of the pipeline: it is not touched, it only routes the call to that node, so on
-- a Redis Cluster the time compared with its schedule marks and pending entries is that node's.
-- Returns {seconds, microseconds}, as TIME does.
return redis.call('TIME')
