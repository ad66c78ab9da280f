-- Extends a lease only if the caller still holds it. KEYS: 1 lease. ARGV: 1 token, 2 ttl (ms).
-- Returns 1 when renewed, 0 when the lease is gone or held by another token (lost).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
