-- A rate limit shared by every replica: GCRA on the Redis server's clock.
-- KEYS[1] the theoretical arrival time (TAT) in microseconds.
-- ARGV[1] emission interval T in us (the safety factor was applied by the caller),
-- ARGV[2] tolerance tau = (burst - 1) * T in us, ARGV[3] calls asked for.
-- Admits calls one by one while TAT - now <= tau (each moves TAT by T); returns
-- {admitted, retry_us}: retry_us is when the next call would pass (0 if all passed).
-- The key expires when TAT has passed: an idle limit leaves nothing behind.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T, tau, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local admitted = 0
while admitted < n and tat - now <= tau do
  tat = tat + T
  admitted = admitted + 1
end
local retry = 0
if admitted < n then retry = tat - tau - now end
if admitted > 0 then
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', math.ceil((tat - now) / 1000) + 1))
end
return {admitted, retry}
