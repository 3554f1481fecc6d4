-- KEYS: reservation, reservations by created time, scope names index, then one hash per scope
-- ARGV: reservation id, amount, now, then each scope name (KEYS order)
-- All or none: every limited scope is checked before any is charged.
if redis.call('EXISTS', KEYS[1]) == 1 then return { 1 } end
local amount, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local scopes = {}
for i = 4, #KEYS do
  local s = roll(read_scope(KEYS[i]), now)
  if s.limit and s.spent + s.reserved + amount > s.limit then
    return { 0, i - 3, fmt(s.limit), fmt(s.spent), fmt(s.reserved) }
  end
  scopes[i - 3] = s
end
for i, s in ipairs(scopes) do
  s.reserved = s.reserved + amount
  write_scope(KEYS[i + 3], s, now)
  redis.call('ZADD', KEYS[3], 0, ARGV[i + 3])
end
write_reservation(KEYS[1], ARGV[2], ARGV[3], ARGV, 4)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return { 1 }
