-- Deletes a project's records in one step: the project hash, its entry in the org's index, its
-- session index and every session record, and its activity stream; records the session ids for
-- the deletion's maintenance job; ends the live followers of every stream of the project.
-- One step, so no session can be created in between (create-session.lua refuses a missing
-- project), no crash leaves records a later project of the same id would list, and the end
-- announcements cannot reach followers of a project created again afterwards.
-- KEYS: 1 project hash, 2 session index, 3 org's project index, 4 activity stream, 5 activity
--       meta, 6 project open-runs, 7 this deletion's record (Keys.projectDeletion), 8 the
--       project's deleting marker (Keys.projectDeleting: no project of this id is created while
--       it exists; the deletion's maintenance job removes it once the files are gone)
-- ARGV: 1 project id, 2 session hash key prefix, 3 pending-UI key prefix (each key is the prefix
--       and the session id; all carry the project's hash tag), 4 session stream channel prefix,
--       5 activity channel, 6 end announcement (StreamHub's end prefix + `stream_ended` json),
--       7 how long the deletion's record is kept (s), 8 the deletion's id, 9 how long the deleting
--       marker is kept at most (s)
-- Returns the session ids the project had; error "NOPROJECT" when it does not exist (a
-- concurrent deletion won; nothing written).
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOPROJECT') end
local sessions = redis.call('ZRANGE', KEYS[2], 0, -1)
redis.call('SET', KEYS[7], table.concat(sessions, ','), 'EX', ARGV[7])
redis.call('SET', KEYS[8], ARGV[8], 'EX', ARGV[9])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6])
redis.call('ZREM', KEYS[3], ARGV[1])
for _, id in ipairs(sessions) do
  redis.call('DEL', ARGV[2] .. id, ARGV[3] .. id)
  redis.call('PUBLISH', ARGV[4] .. id, ARGV[6])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return sessions
