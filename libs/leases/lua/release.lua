-- Compare-and-delete. KEYS: 1 lease, 2 clean-release marker. ARGV: 1 token, 2 the lease's epoch
-- when the owner left nothing behind (no run running, no job fetched), else ''.
-- Returns 1 when released, 0 otherwise (then the marker is untouched).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
  return 1
end
return 0
