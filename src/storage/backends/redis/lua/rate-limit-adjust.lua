-- KEYS: per rule, its counter of the window the request was admitted in (the current or previous one)
-- ARGV: the token correction (negative when the usage was below the estimate)
-- A counter that is gone (expired) is left alone; tokens never go below 0. The TTL set at admission stays.
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('HINCRBY', KEYS[i], 't', delta) < 0 then
    redis.call('HSET', KEYS[i], 't', 0)
  end
end
return #KEYS
