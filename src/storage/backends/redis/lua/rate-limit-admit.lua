-- KEYS: per rule, its counter of the current window then of the previous one (hashes: r = requests,
--       t = tokens), named <prefix>:rl:<scope>:<window index>
-- ARGV: ms elapsed in the current window, the window in ms, the request's tokens, then per rule its
--       rpm and tpm (-1 = no limit)
-- fits() mirrors src/rate-limits/domain/sliding-window.ts: the estimate scaled by the window, so the
-- arithmetic stays in integers (exact in Lua's doubles for the limits the gateway accepts).
-- All or nothing: every rule is checked before any is counted.
-- Returns 1 when counted (else 0), then per rule: requests of the previous and current window, tokens
-- of the previous and current window (after counting, when counted).
local elapsed, window, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

local function fits(previous, current, cost, limit)
  return limit < 0 or previous * (window - elapsed) + (current + cost) * window <= limit * window
end

local rules = #KEYS / 2
local reply, ok = { 1 }, true
for i = 1, rules do
  local current = redis.call('HMGET', KEYS[2 * i - 1], 'r', 't')
  local previous = redis.call('HMGET', KEYS[2 * i], 'r', 't')
  local pr, cr = tonumber(previous[1]) or 0, tonumber(current[1]) or 0
  local pt, ct = tonumber(previous[2]) or 0, tonumber(current[2]) or 0
  if not (fits(pr, cr, 1, tonumber(ARGV[2 + 2 * i])) and fits(pt, ct, tokens, tonumber(ARGV[3 + 2 * i]))) then ok = false end
  reply[4 * i - 2], reply[4 * i - 1], reply[4 * i], reply[4 * i + 1] = pr, cr, pt, ct
end
if not ok then
  reply[1] = 0
  return reply
end
for i = 1, rules do
  local key = KEYS[2 * i - 1]
  reply[4 * i - 1] = redis.call('HINCRBY', key, 'r', 1)
  reply[4 * i + 1] = redis.call('HINCRBY', key, 't', tokens)
  -- Read as the previous window during the next one; gone after that.
  redis.call('PEXPIRE', key, 2 * window)
end
return reply
