-- Replaces the estimate charged to shared cost budgets at admission by the cost the job
-- reported, keeping the charge's time (its place in the window).
-- ARGV[1] key prefix, ARGV[2] number of cost rules R, then R rules of 2 fields: quota
-- name, scope ('t' or 'g'); then the settlements, 4 fields each: tenant, admission id,
-- estimate, actual. A charge no longer there (it left its window, or the key expired)
-- is left alone. Returns the number of charges replaced.
local prefix = ARGV[1]
local r = tonumber(ARGV[2])
local first = 3 + r * 2
local n = (#ARGV - first + 1) / 4
local replaced = 0
for a = 1, n do
  local b = first + (a - 1) * 4
  local tenant, id, est, actual = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  for i = 1, r do
    local name, scope = ARGV[2 + (i - 1) * 2 + 1], ARGV[2 + (i - 1) * 2 + 2]
    local k = prefix .. ':quota:' .. name .. ':' .. scope
    if scope == 't' then k = k .. ':' .. tenant end
    k = k .. ':cost'
    local score = redis.call('ZSCORE', k, id .. ':' .. est)
    if score then
      redis.call('ZREM', k, id .. ':' .. est)
      if tonumber(actual) > 0 then
        redis.call('ZADD', k, score, id .. ':' .. actual)
      end
      replaced = replaced + 1
    end
  end
end
return replaced
