-- The accounting calls of one event-loop turn (RedisAccountingLedger) in one script call: reserves and
-- settles of both ledgers (tokens, then cost), applied one after the other in submission order, each
-- exactly as if it had been sent alone.
-- KEYS: per ledger (tokens, then cost): reservations by created time, scope names index
-- ARGV: per ledger (tokens, then cost): scope key prefix, reservation key prefix; then the operations,
--   reserve: 'r', reservation id, now, token amount, cost amount, n, then the n scope names
--   settle:  's', reservation id, now, actual tokens, actual cost (both '' = release)
-- Reply: one per operation, in order. Reserve: { 1 }, or { 0, ledger (1 tokens, 2 cost), scope
-- position, limit, spent, reserved }. Settle: { tokens settled (1/0), cost settled (1/0) }. An
-- operation that fails (a key of the wrong type…) answers an error of its own; the others still apply.
-- The scope and reservation keys are built here from the prefixes, as settle_reservation does: fine on
-- standalone Redis/Valkey, not on Redis Cluster.
local ledgers = {
  { scope_prefix = ARGV[1], res_prefix = ARGV[2], res_zset = KEYS[1], index = KEYS[2] },
  { scope_prefix = ARGV[3], res_prefix = ARGV[4], res_zset = KEYS[3], index = KEYS[4] },
}

-- All scopes of both ledgers or nothing; a ledger that already holds the id is left alone (answered
-- ok), as ledger-reserve.lua does: adding the id to its reservations zset tells (and a refusal takes it
-- out again).
local function reserve(id, now, now_s, amounts, names)
  local checked = {}
  for l, ledger in ipairs(ledgers) do
    if redis.call('ZADD', ledger.res_zset, 'NX', now_s, id) == 1 then
      local keys = {}
      for i, name in ipairs(names) do keys[i] = ledger.scope_prefix .. name end
      local scopes, refused, s = check_scopes(keys, amounts[l], now)
      if not scopes then
        for added = 1, l do
          if added == l or checked[added] then redis.call('ZREM', ledgers[added].res_zset, id) end
        end
        return { 0, l, refused, fmt(s.limit), fmt(s.spent), fmt(s.reserved) }
      end
      checked[l] = { scopes = scopes, keys = keys }
    end
  end
  for l, ledger in ipairs(ledgers) do
    local c = checked[l]
    if c then charge_scopes(c.scopes, c.keys, names, amounts[l], ledger.res_prefix .. id, ledger.index, now) end
  end
  return { 1 }
end

local function settle(id, now, actuals)
  local reply = {}
  for l, ledger in ipairs(ledgers) do
    reply[l] = settle_reservation(ledger.res_prefix .. id, ledger.res_zset, ledger.index, ledger.scope_prefix, id, actuals[l], now)
  end
  return reply
end

local replies = {}
local p = 5
while p <= #ARGV do
  local op, id, now = ARGV[p], ARGV[p + 1], tonumber(ARGV[p + 2])
  local amounts = { tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4]) }
  local ok, reply
  if op == 'r' then
    local n = tonumber(ARGV[p + 5])
    local names = {}
    for i = 1, n do names[i] = ARGV[p + 5 + i] end
    ok, reply = pcall(reserve, id, now, ARGV[p + 2], amounts, names)
    p = p + 6 + n
  else
    ok, reply = pcall(settle, id, now, amounts)
    p = p + 5
  end
  -- Like a script of its own, a failed operation keeps what it wrote before failing; it fails alone.
  if not ok then reply = { err = type(reply) == 'table' and reply.err or tostring(reply) } end
  replies[#replies + 1] = reply
end
return replies
