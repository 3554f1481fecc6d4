-- KEYS: records (id -> JSON), time index, kinds index
-- ARGV: per record: id, index member, JSON, kind, kind index key, key index key or '', tenant index key or ''
-- Index members are '<13-digit ts>:<id>' in lex zsets, so every index is ordered by (ts, id).
-- A record whose id is stored already is skipped.
-- A record Redis refuses (a key of ours holding another type: WRONGTYPE) is undone, so that it is never
-- half-indexed, and the others are still written; the reply is then an error starting with REFUSED.
local added = 0
local refused = 0
local reason = nil
local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end
for i = 1, #ARGV, 7 do
  local id, member = ARGV[i], ARGV[i + 1]
  local stored = redis.pcall('HSETNX', KEYS[1], id, ARGV[i + 2])
  local err = failed(stored) and stored.err or nil
  if err == nil and stored == 1 then
    local indexed = {}
    for _, index in ipairs({ KEYS[2], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6] }) do
      if index ~= '' then
        local reply = redis.pcall('ZADD', index, 0, member)
        if failed(reply) then
          err = reply.err
          break
        end
        indexed[#indexed + 1] = index
      end
    end
    if err == nil then
      local reply = redis.pcall('ZADD', KEYS[3], 0, ARGV[i + 3])
      if failed(reply) then err = reply.err end
    end
    if err ~= nil then
      redis.call('HDEL', KEYS[1], id)
      for _, index in ipairs(indexed) do redis.call('ZREM', index, member) end
    else
      added = added + 1
    end
  end
  if err ~= nil then
    refused = refused + 1
    reason = err
  end
end
if refused > 0 then
  return redis.error_reply('REFUSED ' .. refused .. ' audit record(s): ' .. reason)
end
return added
