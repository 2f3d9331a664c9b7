-- Returns leases; idempotent.
-- KEYS[1] leases; ARGV[1..] lease ids
-- Returns one integer per id: 0 released while held, 1 had expired (its deadline had
-- passed; removed now), 2 not held (released before, or expired and reclaimed).
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV do
  local deadline = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not deadline then
    out[#out + 1] = 2
  else
    redis.call('ZREM', KEYS[1], ARGV[i])
    if tonumber(deadline) > now_ms then
      out[#out + 1] = 0
    else
      out[#out + 1] = 1
    end
  end
end
return out
