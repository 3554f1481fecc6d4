-- KEYS: reservation, reservations by created time, scope names index
-- ARGV: scope key prefix, reservation id, actual usage ('' = release), now
return settle_reservation(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
