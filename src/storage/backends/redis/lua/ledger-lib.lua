-- Shared by the ledger scripts (prepended to each when loaded).
-- A scope is a hash: limit ('' = unlimited), spent, reserved, period ('' = lifetime), ws (window
-- start), updated. Lua numbers are doubles: exact for the integers up to 2^53 the ledger allows, and
-- written back with %d because tostring() would switch to exponent notation.
local function fmt(n) return string.format('%d', n) end

-- (`updated` is not read: every write sets it to now.)
local function read_scope(key)
  local v = redis.call('HMGET', key, 'limit', 'spent', 'reserved', 'period', 'ws')
  if not v[2] then return { exists = false, spent = 0, reserved = 0, ws = 0 } end
  return {
    exists = true, limit = tonumber(v[1]), spent = tonumber(v[2]), reserved = tonumber(v[3]),
    period = tonumber(v[4]), ws = tonumber(v[5]),
  }
end

-- The lazy window rollover of rolledOver() in src/budgets/domain/ledger.ts.
local function roll(s, now)
  if s.period and now >= s.ws + s.period then
    s.spent = 0
    s.ws = now - now % s.period
    s.rolled = true
  end
  return s
end

local function write_scope(key, s, now)
  s.updated = now
  redis.call('HSET', key, 'limit', s.limit and fmt(s.limit) or '', 'spent', fmt(s.spent),
    'reserved', fmt(s.reserved), 'period', s.period and fmt(s.period) or '', 'ws', fmt(s.ws),
    'updated', fmt(now))
end

-- Reserve and settle change only the usage of a scope that exists: reserved and updated, spent when
-- it changed or the window rolled over, ws when it rolled over. Writing just those (not all six fields)
-- matters on the hot path, where each field costs a string.format and a conversion. A new scope is
-- written whole.
local function write_usage(key, s, now, spent_changed)
  if not s.exists then return write_scope(key, s, now) end
  s.updated = now
  local fields = { 'reserved', fmt(s.reserved), 'updated', fmt(now) }
  if spent_changed or s.rolled then
    fields[5], fields[6] = 'spent', fmt(s.spent)
  end
  if s.rolled then
    fields[#fields + 1], fields[#fields + 2] = 'ws', fmt(s.ws)
  end
  redis.call('HSET', key, unpack(fields))
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

-- Reserve, first half: reads (and rolls over) the scope hashes keys[1 .. #keys]. Returns them, or nil,
-- the 1-based position of the first that cannot take amount, and that scope.
local function check_scopes(keys, amount, now)
  local scopes = {}
  for i, key in ipairs(keys) do
    local s = roll(read_scope(key), now)
    if s.limit and s.spent + s.reserved + amount > s.limit then return nil, i, s end
    scopes[i] = s
  end
  return scopes
end

-- Reserve, second half: charges the checked scopes (keys[i] holds the scope named names[i]) and
-- records the reservation under res_key (the caller has added its id to the reservations zset).
local function charge_scopes(scopes, keys, names, amount, res_key, index, now)
  for i, s in ipairs(scopes) do
    s.reserved = s.reserved + amount
    write_usage(keys[i], s, now, false)
    -- Every writer indexes the scopes it creates and nothing removes them: only a new one needs it.
    if not s.exists then redis.call('ZADD', index, 0, names[i]) end
  end
  write_reservation(res_key, fmt(amount), fmt(now), names, 1)
end

-- Commit (actual) or release (actual nil) of reservation `id`: only the call that finds the reservation
-- adjusts the scopes (exactly once). Returns 1, or 0 when the reservation is unknown. The scope keys
-- are derived from the stored reservation, which the caller cannot know without a second round trip;
-- fine on standalone Redis/Valkey (not Redis Cluster).
local function settle_reservation(res_key, res_zset, index, scope_prefix, id, actual, now)
  local flat = redis.call('HGETALL', res_key)
  if #flat == 0 then return 0 end
  local r = {}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  local amount = tonumber(r.amount)
  for i = 1, tonumber(r.n) do
    local name = r['scope:' .. i]
    local key = scope_prefix .. name
    local s = roll(read_scope(key), now)
    -- Never below 0: putScope (migration) may have rewritten the totals under a live reservation.
    s.reserved = math.max(0, s.reserved - amount)
    if actual then s.spent = s.spent + actual end
    write_usage(key, s, now, actual ~= nil)
    if not s.exists then redis.call('ZADD', index, 0, name) end
  end
  redis.call('DEL', res_key)
  redis.call('ZREM', res_zset, id)
  return 1
end
