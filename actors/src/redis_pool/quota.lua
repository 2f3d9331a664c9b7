-- Checks and records a batch of admissions against quotas shared by every replica,
-- atomically, on the Redis server's clock.
-- ARGV[1] key prefix, ARGV[2] number of rules R, then R rules of 5 fields:
--   quota name, scope ('t' tenant or 'g' global), kind ('w' window or 'c' cost),
--   limit (admissions, or cost budget), window length in microseconds,
-- then the admissions, 3 fields each: tenant, estimated cost, admission id (unique across
-- processes: it names the admission's records, so a settle can find its charge).
-- Keys: PREFIX:quota:NAME:g or PREFIX:quota:NAME:t:TENANT (sorted set of admissions,
-- score = time in us) and the same with :cost (members "id:cost", score = time).
-- Every key expires after its quota's longest window: an idle tenant leaves nothing.
-- Returns, per admission, three integers: status (0 admitted, 1 not until, 2 never),
-- the retry time in microseconds (exact: when the blocking admission or charge leaves
-- its window), and the refusing rule's index (1-based; 0 when admitted).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local prefix = ARGV[1]
-- Numbers go to Redis as integers: Lua's default formatting would round them (1.7e+15).
local function int(x) return string.format('%d', x) end
local r = tonumber(ARGV[2])
local rules = {}
local longest = {}
for i = 1, r do
  local b = 2 + (i - 1) * 5
  local rule = { name = ARGV[b + 1], scope = ARGV[b + 2], kind = ARGV[b + 3],
                 limit = tonumber(ARGV[b + 4]), per = tonumber(ARGV[b + 5]) }
  rules[i] = rule
  longest[rule.name] = math.max(longest[rule.name] or 0, rule.per)
end
local function key(rule, tenant)
  local k = prefix .. ':quota:' .. rule.name .. ':' .. rule.scope
  if rule.scope == 't' then k = k .. ':' .. tenant end
  if rule.kind == 'c' then k = k .. ':cost' end
  return k
end
local function cost_of(member)
  return tonumber(string.match(member, ':(%d+)$'))
end
local out = {}
local first = 3 + r * 5
local n = (#ARGV - first + 1) / 3
for a = 1, n do
  local tenant = ARGV[first + (a - 1) * 3]
  local est = tonumber(ARGV[first + (a - 1) * 3 + 1])
  local id = ARGV[first + (a - 1) * 3 + 2]
  local status, retry, which = 0, 0, 0
  for i, rule in ipairs(rules) do
    local k = key(rule, tenant)
    -- Forget what no window of this quota can still count.
    redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. int(now - longest[rule.name] + 1))
    local from = '(' .. int(now - rule.per)
    if rule.kind == 'w' then
      local count = redis.call('ZCOUNT', k, from, '+inf')
      if count >= rule.limit then
        -- The limit-th most recent admission leaves the window at its time + per.
        local s = redis.call('ZREVRANGEBYSCORE', k, '+inf', from, 'WITHSCORES', 'LIMIT', rule.limit - 1, 1)
        local wait = tonumber(s[2]) + rule.per - now
        if status == 0 or wait > retry then status, retry, which = 1, wait, i end
      end
    else
      if est > rule.limit then
        status, retry, which = 2, 0, i
        break
      end
      local charges = redis.call('ZRANGEBYSCORE', k, from, '+inf', 'WITHSCORES')
      local spent = 0
      for c = 1, #charges, 2 do spent = spent + cost_of(charges[c]) end
      if spent + est > rule.limit then
        -- Oldest charges leave first: wait until enough of them have.
        local over = spent + est - rule.limit
        local wait = 0
        for c = 1, #charges, 2 do
          over = over - cost_of(charges[c])
          if over <= 0 then
            wait = tonumber(charges[c + 1]) + rule.per - now
            break
          end
        end
        if status == 0 or wait > retry then status, retry, which = 1, wait, i end
      end
    end
  end
  if status == 0 then
    local done = {}
    for _, rule in ipairs(rules) do
      local k = key(rule, tenant)
      if not done[k] then
        done[k] = true
        local member = id
        if rule.kind == 'c' then member = member .. ':' .. est end
        redis.call('ZADD', k, int(now), member)
        redis.call('PEXPIRE', k, int(math.ceil(longest[rule.name] / 1000) + 1))
      end
    end
  end
  out[#out + 1] = status
  out[#out + 1] = retry
  out[#out + 1] = which
end
return out
