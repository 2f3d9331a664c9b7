-- Grants up to #ARGV-2 leases of a shared slot pool, atomically.
-- KEYS[1] leases: sorted set, lease id -> deadline (ms, Redis server clock)
-- KEYS[2] fence: counter of fencing tokens
-- ARGV[1] cap, ARGV[2] ttl in ms, ARGV[3..] lease ids chosen by the caller (unique)
-- Returns {reclaimed, granted ids..., tokens...}: expired leases removed, then one
-- token per granted id (the first `#granted` ids of ARGV[3..] were granted, in order).
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- Reclaim leases whose deadline has passed on the server's clock (a holder that died
-- or stopped renewing); a deadline equal to now is expired.
local reclaimed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local cap = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local free = cap - redis.call('ZCARD', KEYS[1])
local wanted = #ARGV - 2
local n = math.min(free, wanted)
local out = {reclaimed}
local tokens = {}
for i = 1, n do
  local id = ARGV[2 + i]
  -- NX: an id already present (a retried call) is never granted twice.
  if redis.call('ZADD', KEYS[1], 'NX', now_ms + ttl, id) == 1 then
    -- Fencing tokens only grow: INCR, floored at the server's clock in microseconds so
    -- they keep growing even if the counter is lost with the dataset.
    local token = redis.call('INCR', KEYS[2])
    if token < now_us then
      redis.call('SET', KEYS[2], now_us)
      token = now_us
    end
    out[#out + 1] = id
    tokens[#tokens + 1] = token
  end
end
for i = 1, #tokens do
  out[#out + 1] = tokens[i]
end
return out
