-- KEYS: per rule, its buckets: a hash <prefix>:rlb:<scope> of field <bucket index> = "requests:tokens:last"
--       (last: epoch ms of the bucket's latest admission)
-- ARGV: now (epoch ms), the window in ms, now's bucket index, the request's tokens, then per rule its
--       rpm and tpm (-1 = no limit)
-- Mirrors src/rate-limits/domain/sliding-window.ts: a bucket counts while last + window > now; the
-- request fits a rule when the counted use + its cost stays within the limit. All or nothing: every
-- rule is checked before any is counted. Buckets that no longer count are deleted on the way.
-- Returns 1 when counted (else 0), then per rule: the number n of its live buckets, then n times
-- index, requests, tokens, last (after counting, when counted).
local now, window, index, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local rules = #KEYS
local live, ok = {}, true
for i = 1, rules do
  local fields = redis.call('HGETALL', KEYS[i])
  local buckets, dead, requests, used = {}, {}, 0, 0
  for j = 1, #fields, 2 do
    local r, t, last = string.match(fields[j + 1], '^(%d+):(%d+):(%d+)$')
    r, t, last = tonumber(r), tonumber(t), tonumber(last)
    if last ~= nil and last + window > now then
      buckets[#buckets + 1] = { tonumber(fields[j]), r, t, last }
      requests, used = requests + r, used + t
    else
      dead[#dead + 1] = fields[j]
    end
  end
  if #dead > 0 then redis.call('HDEL', KEYS[i], unpack(dead)) end
  local rpm, tpm = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  if (rpm >= 0 and requests + 1 > rpm) or (tpm >= 0 and used + tokens > tpm) then ok = false end
  live[i] = buckets
end

if ok then
  for i = 1, rules do
    local buckets, bucket = live[i], nil
    for _, b in ipairs(buckets) do
      if b[1] == index then bucket = b end
    end
    if bucket == nil then
      bucket = { index, 0, 0, now }
      buckets[#buckets + 1] = bucket
    end
    bucket[2], bucket[3], bucket[4] = bucket[2] + 1, bucket[3] + tokens, math.max(bucket[4], now)
    redis.call('HSET', KEYS[i], string.format('%d', index), string.format('%d:%d:%d', bucket[2], bucket[3], bucket[4]))
    -- Every bucket stops counting within a window of its last admission; a second window covers clock skew.
    redis.call('PEXPIRE', KEYS[i], 2 * window)
  end
end

local reply, n = { ok and 1 or 0 }, 1
for i = 1, rules do
  n = n + 1
  reply[n] = #live[i]
  for _, b in ipairs(live[i]) do
    for k = 1, 4 do reply[n + k] = b[k] end
    n = n + 4
  end
end
return reply
