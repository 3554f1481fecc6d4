-- KEYS: lock
-- ARGV: holder
-- Deletes the lock only while this holder has it: once its lease lapsed, another holder may own it.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
