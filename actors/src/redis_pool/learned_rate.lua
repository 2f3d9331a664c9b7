-- A learned rate shared by every replica (issue 26): GCRA at the rate kept in Redis, on
-- the Redis server's clock, and the additive increase of the successes the caller reports.
-- KEYS[1] the theoretical arrival time (TAT) in microseconds; KEYS[2] the learned rate, a
-- hash: rate (requests per `per`), gen (its generation, +1 per cut), cut_rate (the rate
-- before the last cut, 0 before any), pause_until (us, the end of the latest Retry-After).
-- ARGV[1] per in us, ARGV[2] the ceiling, ARGV[3] the initial rate, ARGV[4] the safety
-- factor, ARGV[5] calls asked for, ARGV[6] successes since the caller's last call.
-- Increase per success: half a request before the first cut (slow start), a thousandth
-- of the last cut's rate below it, a hundredth above it (the provider may have raised its
-- limit); never above the ceiling.
-- Returns {admitted, retry_us, gen, floor(rate)}: retry_us is when the next call would
-- pass (the end of a pause, or of the rate's interval; 0 if all passed).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local per, ceiling, initial = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local safety, n, successes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local rate = tonumber(redis.call('HGET', KEYS[2], 'rate') or initial)
local gen = tonumber(redis.call('HGET', KEYS[2], 'gen') or 0)
local cut_rate = tonumber(redis.call('HGET', KEYS[2], 'cut_rate') or 0)
local pause = tonumber(redis.call('HGET', KEYS[2], 'pause_until') or 0)
if successes > 0 then
  local step = 0.5
  if cut_rate > 0 then
    if rate < cut_rate then step = cut_rate / 1000 else step = cut_rate / 100 end
  end
  rate = math.min(ceiling, rate + successes * step)
  redis.call('HSET', KEYS[2], 'rate', tostring(rate))
end
redis.call('PEXPIRE', KEYS[2], 3600000)
if now < pause then
  return {0, pause - now, gen, math.floor(rate)}
end
local T = math.max(1, math.floor(per / (rate * safety)))
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local admitted = 0
while admitted < n and tat <= now do
  tat = tat + T
  admitted = admitted + 1
end
local retry = 0
if admitted < n then retry = tat - now end
if admitted > 0 then
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', math.ceil((tat - now) / 1000) + 1))
end
return {admitted, retry, gen, math.floor(rate)}
