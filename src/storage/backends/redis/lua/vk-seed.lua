-- KEYS: records, token hashes, hash of each id, id index
-- ARGV: (id, token hash, record JSON) per key
-- Writes every key only when the store holds none (docs/storage.md); all checks come before any write,
-- so a conflicting seed writes nothing. Answers the count, or 'id' / 'token' on a conflict.
if redis.call('ZCARD', KEYS[4]) > 0 then return 0 end
local ids, hashes = {}, {}
for i = 1, #ARGV, 3 do
  local id, hash = ARGV[i], ARGV[i + 1]
  if ids[id] or redis.call('HEXISTS', KEYS[1], id) == 1 then return 'id' end
  if hashes[hash] or redis.call('HEXISTS', KEYS[2], hash) == 1 then return 'token' end
  ids[id], hashes[hash] = true, true
end
for i = 1, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[4], 0, ARGV[i])
end
return #ARGV / 3
