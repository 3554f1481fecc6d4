-- KEYS: the index set to walk (all entries, one key id's or one model's)
-- ARGV: entry key prefix, offset, batch size, key id filter ('' = any), model filter ('' = any),
--       what the index is ('all' | 'key' | 'model')
-- Walks one batch of the index: deletes the entries matching the filter, drops members whose entry
-- is gone or no longer belongs to this index (an expired hash stored again by another key), and
-- keeps the rest (with both filters: same key, other model). Returns {deleted, kept, walked}; the
-- next batch starts at offset + kept, since everything else walked left the index.
local offset = tonumber(ARGV[2])
local members = redis.call('ZRANGE', KEYS[1], offset, offset + tonumber(ARGV[3]) - 1)
local wantKey, wantModel, kind = ARGV[4], ARGV[5], ARGV[6]
local deleted, kept = 0, 0
for _, member in ipairs(members) do
  local entry = ARGV[1] .. member
  local fields = redis.call('HMGET', entry, 'key', 'model')
  local key, model = fields[1], fields[2]
  local stale = key == false or (kind == 'key' and key ~= wantKey) or (kind == 'model' and model ~= wantModel)
  if stale then
    redis.call('ZREM', KEYS[1], member)
  elseif (wantKey == '' or key == wantKey) and (wantModel == '' or model == wantModel) then
    redis.call('UNLINK', entry)
    redis.call('ZREM', KEYS[1], member)
    deleted = deleted + 1
  else
    kept = kept + 1
  end
end
return {deleted, kept, #members}
