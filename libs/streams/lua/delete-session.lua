-- Unregisters a session and appends its `session_deleted` to the project activity stream,
-- atomically (gateway side; the session's stream, runs and files are deleted afterwards).
-- KEYS: 1 session hash, 2 project's session index (zset), 3 project hash, 4 project activity
--       stream, 5 activity meta
-- ARGV: 1 session id, 2 retention "<maxlen>:<maxAgeMs>", 3 activity channel, 4 epoch seed,
--       5 `session_deleted` event json, 6 the session stream's channel, 7 its end announcement
--       (StreamHub's end prefix + the `stream_ended` event json: its live subscribers end)
-- Returns 1 when the session was registered (and is not now), 0 when it was not (a concurrent
-- delete won: only one `session_deleted` is appended). No event when the project itself is
-- being deleted (its activity stream goes with it).
-- The event goes first, as in create-session.lua: a failed append leaves the session in place.
if redis.call('HEXISTS', KEYS[1], 'createdAt') == 0 then
  -- Not registered; a stray hash (fields a late write left, no record) goes too.
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  pf_append(KEYS[4], KEYS[5], ARGV[3], ARGV[2], ARGV[4], ARGV[5])
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
