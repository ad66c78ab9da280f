-- Takes a project lease if nobody holds it, with a fresh epoch (fencing token).
-- KEYS: 1 lease, 2 epoch counter (no TTL: epochs never repeat across expiries),
--       3 clean-release marker (the epoch whose owner last released the lease cleanly)
-- ARGV: 1 worker id, 2 ttl (ms)
-- Returns {1, token, epoch, clean} when acquired (clean = 1 when the previous ownership ended with
-- a clean release, or there was none), {0, currentToken, pttl} when held by someone.
local current = redis.call('GET', KEYS[1])
if current then return {0, current, redis.call('PTTL', KEYS[1])} end
local epoch = redis.call('INCR', KEYS[2])
local token = ARGV[1] .. ':' .. epoch
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
local clean = 0
if epoch == 1 or redis.call('GET', KEYS[3]) == tostring(epoch - 1) then clean = 1 end
return {1, token, epoch, clean}
