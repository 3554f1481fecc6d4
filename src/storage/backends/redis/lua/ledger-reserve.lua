-- KEYS: reservation, reservations by created time, scope names index, then one hash per scope
-- ARGV: reservation id, amount, now, then each scope name (KEYS order)
-- All or none: every limited scope is checked before any is charged.
-- Idempotent: adding the id to the reservations zset tells whether it is outstanding already.
if redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1]) == 0 then return { 1 } end
local amount, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local keys, names = {}, {}
for i = 4, #KEYS do
  keys[i - 3] = KEYS[i]
  names[i - 3] = ARGV[i]
end
local scopes, refused, s = check_scopes(keys, amount, now)
if not scopes then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return { 0, refused, fmt(s.limit), fmt(s.spent), fmt(s.reserved) }
end
charge_scopes(scopes, keys, names, amount, KEYS[1], KEYS[3], now)
return { 1 }
