-- Takes one slot of a counting semaphore whose holders expire (an org's concurrent runs).
-- KEYS[1] ZSET holder -> expiry (ms since epoch)
-- ARGV[1] holder id, ARGV[2] now (ms), ARGV[3] holder TTL (ms), ARGV[4] capacity
-- Returns 1 when the holder holds a slot (already held: refreshed), 0 when the quota is full.
local key, holder = KEYS[1], ARGV[1]
local now, ttl, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- Holders of crashed workers stop being refreshed: they expire instead of leaking slots.
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, holder) then
  redis.call('ZADD', key, now + ttl, holder)
  return 1
end
if redis.call('ZCARD', key) >= cap then
  return 0
end
redis.call('ZADD', key, now + ttl, holder)
return 1
