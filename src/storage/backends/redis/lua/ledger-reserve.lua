-- KEYS: reservation, reservations by created time, scope names index, then one hash per scope
-- ARGV: reservation id, amount, now, then each scope name (KEYS order)
-- All or none: every limited scope is checked before any is charged.
if redis.call('EXISTS', KEYS[1]) == 1 then return { 1 } end
local amount, now = tonumber(ARGV[2]), tonumber(ARGV[3])
local scopes, refused, s = check_scopes(4, #KEYS - 3, amount, now)
if not scopes then return { 0, refused, fmt(s.limit), fmt(s.spent), fmt(s.reserved) } end
charge_scopes(scopes, 4, amount, ARGV, 4, KEYS[1], KEYS[2], KEYS[3], ARGV[1], now)
return { 1 }
