-- Registers a new session and appends its `session_created` to the project activity stream,
-- atomically: a session is never listed without its event, nor announced without its record.
-- KEYS: 1 lease, 2 project hash, 3 session hash, 4 project's session index (zset), 5 session
--       messages list, 6 project activity stream, 7 activity meta
-- ARGV: 1 lease token "<worker>:<epoch>" ('' = unfenced: the gateway), 2 created-at (epoch ms),
--       3 session id, 4 retention "<maxlen>:<maxAgeMs>", 5 activity channel, 6 epoch seed,
--       7 `session_created` event json, 8 n = the number of hash field arguments, then the n
--       arguments (alternating names and values, stored as given), then the history's messages
--       (JSON each, oldest first)
-- Returns the activity entry id; error "FENCED ..." when the token does not hold the lease,
-- "NOPROJECT" when the project does not exist (nothing written either way).
-- The event goes first: Redis does not undo a script's earlier writes when a later command
-- fails, and the append is the part that can (a damaged activity stream key); the record's own
-- writes go to keys only this script creates.
local fenced = pf_fence(KEYS[1], ARGV[1])
if fenced then return fenced end
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOPROJECT') end
local id = pf_append(KEYS[6], KEYS[7], ARGV[5], ARGV[4], ARGV[6], ARGV[7])
local n = tonumber(ARGV[8])
redis.call('HSET', KEYS[3], unpack(ARGV, 9, 8 + n))
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[3])
local i = 9 + n
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('RPUSH', KEYS[5], unpack(ARGV, i, j))
  i = j + 1
end
return id
