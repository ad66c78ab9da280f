-- Starts a run: fenced, only from `queued`, only when it is the oldest open run of its session
-- (runs of one session start strictly in sequence order), and only when its org is below its
-- concurrent-run quota (then the run holds a slot). Appends `run_started`.
-- KEYS: 1 lease, 2 run record, 3 session open-runs zset, 4 stream, 5 stream meta, 6 session hash,
--       7 project activity stream, 8 activity meta, 9 the org's running-runs zset (holder -> expiry
--       in ms; refreshed and released by RunQuota of libs/leases), 10 the org's record (tenancy)
-- ARGV: 1 lease token, 2 retention "<maxlen>:<maxAgeMs>", 3 channel, 4 epoch seed, 5 event json,
--       6 now (ms), 7 activity channel, 8 org quota (0 = none), 9 quota holder TTL (ms),
--       then field/value pairs to set on the run record
-- Returns {1, entryId} when started, {0, "not_head"} when an older run of the session is still
-- open, {0, "quota"} when the org runs its quota already, {0, "org_disabled"} when an operator
-- disabled the org, {0, <state>} when the run is no longer queued; errors "FENCED …", "NORUN",
-- "NOSESSION" when the session was deleted (its record, with `createdAt`, is gone: a queued run
-- of a deleted session must not start, nor write `activeRun` into a hash that would look alive).
local fenced = pf_fence(KEYS[1], ARGV[1])
if fenced then return fenced end
local state = redis.call('HGET', KEYS[2], 'status')
if not state then return redis.error_reply('NORUN') end
if state ~= 'queued' then return {0, state} end
if redis.call('HEXISTS', KEYS[6], 'createdAt') == 0 then return redis.error_reply('NOSESSION') end
if redis.call('HGET', KEYS[10], 'disabled') == '1' then return {0, 'org_disabled'} end
local runId = redis.call('HGET', KEYS[2], 'id')
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if head ~= runId then return {0, 'not_head'} end
local cap = tonumber(ARGV[8])
if cap > 0 then
  local now = tonumber(ARGV[6])
  -- Holders of crashed workers stop being refreshed: they expire instead of leaking slots.
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', now)
  if not redis.call('ZSCORE', KEYS[9], runId) and redis.call('ZCARD', KEYS[9]) >= cap then
    return {0, 'quota'}
  end
  redis.call('ZADD', KEYS[9], now + tonumber(ARGV[9]), runId)
end
local id = pf_append(KEYS[4], KEYS[5], ARGV[3], ARGV[2], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[2], 'status', 'running', 'updatedAt', ARGV[6], 'startOffset', id, 'startedAt', ARGV[6])
for i = 10, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[6], 'activeRun', runId)
pf_append(KEYS[7], KEYS[8], ARGV[7], ARGV[2], ARGV[4], cjson.encode({
  type = 'run_started', runId = runId, sessionId = redis.call('HGET', KEYS[2], 'sessionId'), status = 'running'
}))
return {1, id}
