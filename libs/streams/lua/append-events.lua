-- Appends wire events to a session stream, fenced by the project lease.
-- KEYS: 1 lease, 2 stream, 3 stream meta, 4 session messages list, 5 session hash
-- ARGV: 1 lease token "<worker>:<epoch>" ('' = unfenced), 2 retention "<maxlen>:<maxAgeMs>", 3 channel, 4 epoch seed,
--       then pairs: event json, history json ('' = nothing to mirror)
-- Returns the entry ids, or the error "FENCED ..." when the caller does not hold the lease, or
-- "NOSESSION" when the session record KEYS[5] is gone (a deleted session's late events must not
-- bring it back); a hash without `createdAt` is no record (only a stray field of a deleted one).
local fenced = pf_fence(KEYS[1], ARGV[1])
if fenced then return fenced end
if redis.call('HEXISTS', KEYS[5], 'createdAt') == 0 then return redis.error_reply('NOSESSION') end
local ids = {}
for i = 5, #ARGV, 2 do
  ids[#ids + 1] = pf_append(KEYS[2], KEYS[3], ARGV[3], ARGV[2], ARGV[4], ARGV[i])
  local history = ARGV[i + 1]
  if history and history ~= '' then redis.call('RPUSH', KEYS[4], history) end
end
return ids
