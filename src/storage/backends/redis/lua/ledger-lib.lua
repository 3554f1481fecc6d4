-- Shared by the ledger scripts (prepended to each when loaded).
-- A scope is a hash: limit ('' = unlimited), spent, reserved, period ('' = lifetime), ws (window
-- start), updated. Lua numbers are doubles: exact for the integers up to 2^53 the ledger allows, and
-- written back with %d because tostring() would switch to exponent notation.
local function fmt(n) return string.format('%d', n) end

local function read_scope(key)
  local v = redis.call('HMGET', key, 'limit', 'spent', 'reserved', 'period', 'ws', 'updated')
  if not v[2] then return { exists = false, spent = 0, reserved = 0, ws = 0 } end
  return {
    exists = true, limit = tonumber(v[1]), spent = tonumber(v[2]), reserved = tonumber(v[3]),
    period = tonumber(v[4]), ws = tonumber(v[5]), updated = tonumber(v[6]),
  }
end

-- The lazy window rollover of rolledOver() in src/budgets/domain/ledger.ts.
local function roll(s, now)
  if s.period and now >= s.ws + s.period then
    s.spent = 0
    s.ws = now - now % s.period
  end
  return s
end

local function write_scope(key, s, now)
  s.updated = now
  redis.call('HSET', key, 'limit', s.limit and fmt(s.limit) or '', 'spent', fmt(s.spent),
    'reserved', fmt(s.reserved), 'period', s.period and fmt(s.period) or '', 'ws', fmt(s.ws),
    'updated', fmt(now))
end

local function scope_reply(s)
  return { s.limit and fmt(s.limit) or '', fmt(s.spent), fmt(s.reserved),
    s.period and fmt(s.period) or '', fmt(s.ws), fmt(s.updated) }
end

-- A reservation is a hash: amount, created, n and scope:1 .. scope:n (no JSON: cjson refuses some
-- valid strings, and a reservation that cannot be read could never be settled).
local function write_reservation(key, amount, created, names, first)
  local fields = { 'amount', amount, 'created', created, 'n', #names - first + 1 }
  for i = first, #names do
    fields[#fields + 1] = 'scope:' .. (i - first + 1)
    fields[#fields + 1] = names[i]
  end
  redis.call('HSET', key, unpack(fields))
end
