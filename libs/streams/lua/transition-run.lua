-- Moves a run from one of the allowed states to a new one and appends the event that reports it,
-- atomically and fenced by the project lease. A terminal state also leaves the open-runs zset
-- and clears the session's active run, so "exactly one terminal event" holds under any race.
-- KEYS: 1 lease, 2 run record, 3 session open-runs zset, 4 stream, 5 stream meta, 6 session hash,
--       7 project activity stream, 8 activity meta, 9 project open-runs zset
-- ARGV: 1 lease token ('' = unfenced), 2 retention "<maxlen>:<maxAgeMs>", 3 channel, 4 epoch seed, 5 allowed from-states
--       (comma separated), 6 new state, 7 event json, 8 now (ms), 9 terminal ('1'|'0'),
--       10 activity channel, 11 event type (for the activity entry), then field/value pairs to set
--       on the run record
-- Returns {1, entryId} on success, {0, currentState} when the run is not in an allowed state,
-- error "NORUN" when the record is missing, "FENCED ..." when the lease is not the caller's.
local fenced = pf_fence(KEYS[1], ARGV[1])
if fenced then return fenced end
local state = redis.call('HGET', KEYS[2], 'status')
if not state then return redis.error_reply('NORUN') end
local allowed = false
for s in string.gmatch(ARGV[5], '[^,]+') do
  if s == state then allowed = true end
end
if not allowed then return {0, state} end
local runId = redis.call('HGET', KEYS[2], 'id')
local id = pf_append(KEYS[4], KEYS[5], ARGV[3], ARGV[2], ARGV[4], ARGV[7])
redis.call('HSET', KEYS[2], 'status', ARGV[6], 'updatedAt', ARGV[8])
for i = 12, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
pf_append(KEYS[7], KEYS[8], ARGV[10], ARGV[2], ARGV[4], cjson.encode({
  type = ARGV[11], runId = runId, sessionId = redis.call('HGET', KEYS[2], 'sessionId'), status = ARGV[6]
}))
if ARGV[6] == 'running' then
  redis.call('HSET', KEYS[2], 'startOffset', id, 'startedAt', ARGV[8])
  -- Never into a deleted session's hash (it would exist again, with only this field).
  if redis.call('HEXISTS', KEYS[6], 'createdAt') == 1 then redis.call('HSET', KEYS[6], 'activeRun', runId) end
end
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[2], 'endOffset', id, 'endedAt', ARGV[8])
  redis.call('ZREM', KEYS[3], runId)
  redis.call('ZREM', KEYS[9], runId)
  if redis.call('HGET', KEYS[6], 'activeRun') == runId then redis.call('HDEL', KEYS[6], 'activeRun') end
end
return {1, id}
