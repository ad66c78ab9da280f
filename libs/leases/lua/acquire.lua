-- Takes a project lease if nobody holds it, with a fresh epoch (fencing token).
-- KEYS: 1 lease, 2 epoch counter (no TTL: epochs never repeat across expiries)
-- ARGV: 1 worker id, 2 ttl (ms)
-- Returns {1, token, epoch} when acquired, {0, currentToken, pttl} when held by someone.
local current = redis.call('GET', KEYS[1])
if current then return {0, current, redis.call('PTTL', KEYS[1])} end
local epoch = redis.call('INCR', KEYS[2])
local token = ARGV[1] .. ':' .. epoch
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {1, token, epoch}
