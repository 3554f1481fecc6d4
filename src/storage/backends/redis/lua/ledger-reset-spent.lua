-- KEYS: scope hash
-- ARGV: now
local now = tonumber(ARGV[1])
local s = roll(read_scope(KEYS[1]), now)
if not s.exists then return false end
s.spent = 0
write_scope(KEYS[1], s, now)
return scope_reply(s)
