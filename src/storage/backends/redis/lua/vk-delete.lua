-- KEYS: records, token hashes, hash of each id, id index
-- ARGV: id
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local hash = redis.call('HGET', KEYS[3], ARGV[1])
if hash then redis.call('HDEL', KEYS[2], hash) end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
