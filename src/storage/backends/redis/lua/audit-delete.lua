-- KEYS: records, time index, kinds index
-- ARGV: per record: id, index member, kind or '', kind index key or '', key index key or '',
--       tenant index key or ''
-- Removes each record with every index entry; answers how many records this call removed.
-- The caller reads the index keys from the records (JSON.parse): cjson would refuse some valid
-- payloads (lone surrogate escapes) and so block retention for good.
local removed = 0
for i = 1, #ARGV, 6 do
  local member = ARGV[i + 1]
  removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], member)
  if ARGV[i + 3] ~= '' then
    redis.call('ZREM', ARGV[i + 3], member)
    if redis.call('EXISTS', ARGV[i + 3]) == 0 then redis.call('ZREM', KEYS[3], ARGV[i + 2]) end
  end
  if ARGV[i + 4] ~= '' then redis.call('ZREM', ARGV[i + 4], member) end
  if ARGV[i + 5] ~= '' then redis.call('ZREM', ARGV[i + 5], member) end
end
return removed
