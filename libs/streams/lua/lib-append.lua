-- Shared by every script that writes a session stream (prepended to the script body).
-- Appends one wire event, keeps the stream meta (`last` id, random `epoch` set on first write)
-- and announces the entry on the stream's channel as "<prevId>\n<id>\n<json>", so a subscriber
-- can tell a gap (prevId is not what it saw last) and repair it from the stream.
local function pf_append(stream, meta, channel, maxlen, epoch_seed, json)
  local prev = redis.call('HGET', meta, 'last') or '0-0'
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'd', json)
  redis.call('HSET', meta, 'last', id)
  redis.call('HSETNX', meta, 'epoch', epoch_seed)
  redis.call('PUBLISH', channel, prev .. '\n' .. id .. '\n' .. json)
  return id
end

-- Returns nil when `token` is empty (unfenced write) or owns the lease, else an error reply.
local function pf_fence(lease, token)
  if token == '' then return nil end
  local owner = redis.call('GET', lease)
  if owner ~= token then
    return redis.error_reply('FENCED lease held by ' .. tostring(owner))
  end
  return nil
end
