-- Both ledgers (tokens, then cost) settled in one call.
-- KEYS: per ledger (tokens, then cost): reservation, reservations by created time, scope names index
-- ARGV: reservation id, now, token scope key prefix, cost scope key prefix, actual tokens, actual cost
--       (both '' = release)
-- Reply: { tokens settled (1/0), cost settled (1/0) }.
local id, now = ARGV[1], tonumber(ARGV[2])
return {
  settle_reservation(KEYS[1], KEYS[2], KEYS[3], ARGV[3], id, tonumber(ARGV[5]), now),
  settle_reservation(KEYS[4], KEYS[5], KEYS[6], ARGV[4], id, tonumber(ARGV[6]), now),
}
