-- KEYS: records (id -> JSON), token hashes (hash -> id), hash of each id (id -> hash), id index (lex zset)
-- ARGV: id, token hash, record JSON
-- Both uniqueness checks and all the writes happen in one step, so racing creates cannot both win.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'id' end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 'token' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
return 'ok'
