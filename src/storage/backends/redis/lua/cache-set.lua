-- KEYS: the entry, then the index sets it joins (all entries, by key id, by model)
-- ARGV: ttl ms, expires at (epoch ms), now (epoch ms), member (the request hash), meta JSON, body,
--       key id, model ('' = none)
-- The index sets are sorted by expiry: members past it are trimmed here, and a set lives as long as
-- its longest-lived member, so the indexes never outgrow the entries they point at.
local ttl = tonumber(ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'meta', ARGV[5], 'body', ARGV[6], 'key', ARGV[7])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'model', ARGV[8]) end
redis.call('PEXPIRE', KEYS[1], ttl)
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[3])
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[4])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
