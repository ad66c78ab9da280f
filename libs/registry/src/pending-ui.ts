/**
 * Storage rules of pending extension-UI dialogs (hash `keys.pendingUi`, one per session).
 * Field `<requestId>` holds `{receivedAt, request}` while the dialog waits; resolving it (an answer,
 * a timeout, a cancel) removes the field and leaves a tombstone `answered:<requestId>` holding
 * `{at, by}`, so a late second answer is told "already answered" (409) rather than "unknown".
 * Once no dialog of the session waits, the hash (tombstones only) expires after
 * {@link UI_TOMBSTONE_TTL_MS}; a new dialog makes it persistent again. Every change is one script,
 * so the first resolver wins exactly once even across workers and gateways.
 */
import { LuaScript } from "@pi-fleet/redis";

/** Tombstone field prefix (request ids never contain ":"). */
export const UI_TOMBSTONE_PREFIX = "answered:";

/** How long tombstones outlive the last pending dialog of a session, in ms. */
export const UI_TOMBSTONE_TTL_MS = 3_600_000;

/** How a dialog stopped waiting. */
export type UiResolution = "answered" | "timeout" | "cancelled";

/** The state of one request id in a session's pending hash. */
export type PendingUiStatus = "pending" | "answered" | "unknown";

/**
 * KEYS: lease, pending hash. ARGV: lease token, request id, stored JSON.
 * Adds the dialog only while `token` holds the project lease; returns 1, or 0 when fenced.
 */
export const ADD_PENDING_UI = new LuaScript(
  "add-pending-ui",
  `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PERSIST', KEYS[2])
return 1`,
  2,
);

/**
 * KEYS: pending hash. ARGV: ttl ms, tombstone JSON, then request ids, or "*" for every pending one.
 * Resolves the named dialogs (pending field → tombstone); returns how many this call resolved.
 * When no dialog is left waiting, the hash expires after the ttl.
 */
export const RESOLVE_PENDING_UI = new LuaScript(
  "resolve-pending-ui",
  `local ids = {}
if ARGV[3] == '*' then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(f, 1, ${UI_TOMBSTONE_PREFIX.length}) ~= '${UI_TOMBSTONE_PREFIX}' then ids[#ids + 1] = f end
  end
else
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local won = 0
for _, id in ipairs(ids) do
  if redis.call('HDEL', KEYS[1], id) == 1 then
    redis.call('HSET', KEYS[1], '${UI_TOMBSTONE_PREFIX}' .. id, ARGV[2])
    won = won + 1
  end
end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, ${UI_TOMBSTONE_PREFIX.length}) ~= '${UI_TOMBSTONE_PREFIX}' then return won end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return won`,
  1,
);
