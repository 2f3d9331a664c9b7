-- Extends leases that are still held; a lease that expired is removed and reported
-- lost, never re-taken.
-- KEYS[1] leases; ARGV[1] ttl in ms, ARGV[2..] lease ids
-- Returns one integer per id: 1 renewed, 0 lost.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local deadline = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if deadline and tonumber(deadline) > now_ms then
    redis.call('ZADD', KEYS[1], 'XX', now_ms + ttl, ARGV[i])
    out[#out + 1] = 1
  else
    if deadline then
      redis.call('ZREM', KEYS[1], ARGV[i])
    end
    out[#out + 1] = 0
  end
end
return out
