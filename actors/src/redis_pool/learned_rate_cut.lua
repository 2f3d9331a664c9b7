-- An overload refusal of a call granted in generation ARGV[1] (issue 26), on the Redis
-- server's clock. KEYS[1] the learned rate's hash (see learned_rate.lua).
-- ARGV[1] the call's generation, ARGV[2] its Retry-After in us (0: none), ARGV[3] the
-- minimum rate, ARGV[4] the initial rate.
-- Cuts the rate x0.9 (never below the minimum) once per generation: a refusal of a call
-- granted before the last cut says what the old rate did. A Retry-After pauses every
-- replica until then. Returns {gen, floor(rate)} after.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local call_gen, retry = tonumber(ARGV[1]), tonumber(ARGV[2])
local min, initial = tonumber(ARGV[3]), tonumber(ARGV[4])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or initial)
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or 0)
if call_gen == gen then
  redis.call('HSET', KEYS[1], 'cut_rate', tostring(rate))
  rate = math.max(min, rate * 0.9)
  gen = gen + 1
  redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'gen', tostring(gen))
end
if retry > 0 then
  local pause = tonumber(redis.call('HGET', KEYS[1], 'pause_until') or 0)
  if now + retry > pause then
    redis.call('HSET', KEYS[1], 'pause_until', string.format('%d', now + retry))
  end
end
redis.call('PEXPIRE', KEYS[1], 3600000)
return {gen, math.floor(rate)}
