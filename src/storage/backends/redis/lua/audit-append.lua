-- KEYS: records (id -> JSON), time index, kinds index
-- ARGV: per record: id, index member, JSON, kind, kind index key, key index key or '', tenant index key or ''
-- Index members are '<13-digit ts>:<id>' in lex zsets, so every index is ordered by (ts, id).
-- A record whose id is stored already is skipped.
local added = 0
for i = 1, #ARGV, 7 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 2]) == 1 then
    local member = ARGV[i + 1]
    redis.call('ZADD', KEYS[2], 0, member)
    redis.call('ZADD', KEYS[3], 0, ARGV[i + 3])
    redis.call('ZADD', ARGV[i + 4], 0, member)
    if ARGV[i + 5] ~= '' then redis.call('ZADD', ARGV[i + 5], 0, member) end
    if ARGV[i + 6] ~= '' then redis.call('ZADD', ARGV[i + 6], 0, member) end
    added = added + 1
  end
end
return added
