-- KEYS: reservation, reservations by created time, scope names index
-- ARGV: scope key prefix, reservation id, actual usage ('' = release), now
-- Commit and release: only the call that finds the reservation adjusts the scopes (exactly once).
-- The scope keys are derived from the stored reservation, which the caller cannot know without a
-- second round trip; fine on standalone Redis/Valkey (not Redis Cluster).
local r = redis.call('HMGET', KEYS[1], 'n', 'amount')
if not r[1] then return 0 end
local amount, actual, now = tonumber(r[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, tonumber(r[1]) do
  local name = redis.call('HGET', KEYS[1], 'scope:' .. i)
  local key = ARGV[1] .. name
  local s = roll(read_scope(key), now)
  -- Never below 0: putScope (migration) may have rewritten the totals under a live reservation.
  s.reserved = math.max(0, s.reserved - amount)
  if actual then s.spent = s.spent + actual end
  write_scope(key, s, now)
  redis.call('ZADD', KEYS[3], 0, name)
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
