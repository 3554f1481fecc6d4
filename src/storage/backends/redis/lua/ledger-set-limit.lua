-- KEYS: scope hash, scope names index
-- ARGV: scope name, limit ('' = unlimited), period ('' = lifetime), now
local now, period = tonumber(ARGV[4]), tonumber(ARGV[3])
local s = roll(read_scope(KEYS[1]), now)
s.limit = tonumber(ARGV[2])
if period ~= s.period then
  s.period = period
  s.ws = period and (now - now % period) or 0
end
write_scope(KEYS[1], s, now)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return scope_reply(s)
