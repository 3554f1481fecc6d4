-- KEYS: reservation, reservations by created time
-- ARGV: reservation id, amount, created, then each scope name
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
write_reservation(KEYS[1], ARGV[2], ARGV[3], ARGV, 4)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
