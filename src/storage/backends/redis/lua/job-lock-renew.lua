-- KEYS: lock
-- ARGV: holder, ttl (ms)
-- Extends the lease only while this holder has it: a lapsed lease (gone, or another holder's) is not revived.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
