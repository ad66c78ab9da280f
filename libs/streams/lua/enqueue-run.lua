-- Records a new run of a session and appends `run_queued`, atomically (gateway side).
-- KEYS: 1 idempotency key, 2 session seq, 3 run record, 4 session open-runs zset, 5 stream,
--       6 stream meta, 7 session hash, 8 project activity stream, 9 activity meta,
--       10 project open-runs zset (queued + running runs of the project),
--       11 org open-runs index (zset of "<project>/<runId>", repaired by the gateway at its cap),
--       12 every run of the session (zset by seq: what a session deletion deletes)
-- ARGV: 1 runId, 2 use idempotency ('1'|'0'), 3 idempotency ttl (s), 4 retention "<maxlen>:<maxAgeMs>", 5 channel,
--       6 epoch seed, 7 now (ms), 8 sessionId, 9 first-message preview, 10 prompt chars,
--       11 activity channel, 12 most open runs of the project (0 = no cap),
--       13 most open runs of the org (0 = no cap), 14 org index member "<project>/<runId>"
-- Returns {1, runId, queuedEntryId, seq, position} for a new run, {0, existingRunId} when the
-- idempotency key already names a run; error "NOSESSION" when the session does not exist,
-- "QUEUEFULL <n>" when the project already has ARGV[12] open runs, "ORGFULL <n>" when the org
-- index counts ARGV[13] (nothing written either way).
if redis.call('HEXISTS', KEYS[7], 'createdAt') == 0 then return redis.error_reply('NOSESSION') end
if ARGV[2] == '1' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return {0, existing} end
end
local cap = tonumber(ARGV[12])
if cap > 0 then
  local open = redis.call('ZCARD', KEYS[10])
  if open >= cap then return redis.error_reply('QUEUEFULL ' .. open) end
end
local orgCap = tonumber(ARGV[13])
if orgCap > 0 then
  local open = redis.call('ZCARD', KEYS[11])
  if open >= orgCap then return redis.error_reply('ORGFULL ' .. open) end
end
local seq = redis.call('INCR', KEYS[2])
local position = redis.call('ZCARD', KEYS[4])
local now = tonumber(ARGV[7])
local event = cjson.encode({
  type = 'run_queued', runId = ARGV[1], sessionId = ARGV[8], seq = seq, position = position,
  queuedAt = now
})
local id = pf_append(KEYS[5], KEYS[6], ARGV[5], ARGV[4], ARGV[6], event)
pf_append(KEYS[8], KEYS[9], ARGV[11], ARGV[4], ARGV[6],
  cjson.encode({ type = 'run_queued', runId = ARGV[1], sessionId = ARGV[8], seq = seq, position = position }))
redis.call('HSET', KEYS[3], 'id', ARGV[1], 'sessionId', ARGV[8], 'seq', seq, 'status', 'queued',
  'createdAt', ARGV[7], 'updatedAt', ARGV[7], 'queuedOffset', id, 'position', position,
  'promptChars', ARGV[10])
redis.call('ZADD', KEYS[4], seq, ARGV[1])
redis.call('ZADD', KEYS[12], seq, ARGV[1])
redis.call('ZADD', KEYS[10], now, ARGV[1])
redis.call('ZADD', KEYS[11], now, ARGV[14])
redis.call('HSETNX', KEYS[7], 'firstMessage', ARGV[9])
redis.call('HSET', KEYS[7], 'lastActivityAt', ARGV[7])
if ARGV[2] == '1' then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3]) end
return {1, ARGV[1], id, seq, position}
