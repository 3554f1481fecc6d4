-- KEYS: records, token hashes, hash of each id, id index
-- ARGV: id, new token hash, record JSON
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'missing' end
local owner = redis.call('HGET', KEYS[2], ARGV[2])
if owner and owner ~= ARGV[1] then return 'token' end
local old_hash = redis.call('HGET', KEYS[3], ARGV[1])
if old_hash and old_hash ~= ARGV[2] then redis.call('HDEL', KEYS[2], old_hash) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 'ok'
