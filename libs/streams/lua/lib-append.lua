-- Shared by every script that writes a session stream (prepended to the script body).
-- Appends one wire event, keeps the stream meta (`last` id, random `epoch` set on first write)
-- and announces the entry on the stream's channel as "<epoch>\n<prevId>\n<id>\n<json>", so a
-- subscriber can tell a gap (prevId is not what it saw last) and repair it from the stream, and
-- can tell that the stream was lost and recreated (the epoch changed).
-- `retention` is "<maxlen>:<maxAgeMs>" (max age 0 = no age limit).
local function pf_append(stream, meta, channel, retention, epoch_seed, json)
  local maxlen, maxage = string.match(retention, '^(%d+):(%d+)$')
  local prev = redis.call('HGET', meta, 'last') or '0-0'
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'd', json)
  if tonumber(maxage) > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('XTRIM', stream, 'MINID', tostring(now - tonumber(maxage)) .. '-0')
  end
  redis.call('HSET', meta, 'last', id)
  redis.call('HSETNX', meta, 'epoch', epoch_seed)
  local epoch = redis.call('HGET', meta, 'epoch')
  redis.call('PUBLISH', channel, epoch .. '\n' .. prev .. '\n' .. id .. '\n' .. json)
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
