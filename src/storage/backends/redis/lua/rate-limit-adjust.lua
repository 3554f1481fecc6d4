-- KEYS: per rule, its buckets (see rate-limit-admit.lua)
-- ARGV: the bucket index the request was admitted in, the token correction (negative when the usage
--       was below the estimate), now (epoch ms), the window in ms
-- A bucket that is gone or no longer counts is left alone; tokens never go below 0. The TTL stays.
local field, delta, now, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, #KEYS do
  local value = redis.call('HGET', KEYS[i], field)
  if value then
    local r, t, last = string.match(value, '^(%d+):(%d+):(%d+)$')
    r, t, last = tonumber(r), tonumber(t), tonumber(last)
    if last ~= nil and last + window > now then
      redis.call('HSET', KEYS[i], field, string.format('%d:%d:%d', r, math.max(0, t + delta), last))
    end
  end
end
return #KEYS
