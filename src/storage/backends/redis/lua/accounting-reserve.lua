-- Both ledgers (tokens, then cost) in one call, all scopes of both or nothing.
-- KEYS: per ledger (tokens, then cost): reservation, reservations by created time, scope names index;
--       then the n scope hashes of the token ledger, then the n scope hashes of the cost ledger
-- ARGV: reservation id, now, token amount, cost amount, then the n scope names (KEYS order)
-- A ledger that already holds the id is left alone (answered ok), as ledger-reserve.lua does.
-- Reply: { 1 }, or { 0, ledger (1 tokens, 2 cost), scope position, limit, spent, reserved }.
local id, now = ARGV[1], tonumber(ARGV[2])
local n = #ARGV - 4
local checked = {}
for l = 1, 2 do
  if redis.call('EXISTS', KEYS[3 * l - 2]) == 0 then
    local scopes, refused, s = check_scopes(7 + (l - 1) * n, n, tonumber(ARGV[2 + l]), now)
    if not scopes then return { 0, l, refused, fmt(s.limit), fmt(s.spent), fmt(s.reserved) } end
    checked[l] = scopes
  end
end
for l = 1, 2 do
  if checked[l] then
    charge_scopes(checked[l], 7 + (l - 1) * n, tonumber(ARGV[2 + l]), ARGV, 5, KEYS[3 * l - 2], KEYS[3 * l - 1], KEYS[3 * l], id, now)
  end
end
return { 1 }
