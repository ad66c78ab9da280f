/**
 * Identifier rules shared by every package. Ids are slugs so they are safe as Redis key parts,
 * BullMQ queue names (no ":"), and directory names. No path is ever built from an id that did
 * not pass these checks (see `@pi-fleet/security` for the path builders).
 */

/** Org and project ids: lowercase slug, 1–63 chars, no leading "-". */
export const SLUG_PATTERN = "^[a-z0-9][a-z0-9-]{0,62}$";
/** Session and run ids: lowercase alphanumerics plus "-" and "_", 1–64 chars (ULIDs/UUIDs fit). */
export const ENTITY_ID_PATTERN = "^[a-z0-9][a-z0-9_-]{0,63}$";
/** Stream offsets: a Redis stream entry id `<ms>-<seq>`, or "0" for "from the start". */
export const OFFSET_PATTERN = "^(0|[0-9]{1,20}-[0-9]{1,20})$";
/** Custom provider ids (as in the seed contract). */
export const PROVIDER_ID_PATTERN = "^[a-zA-Z0-9_.:-]+$";
/** An extension UI request id (pi's dialog ids are UUIDs); schemas add 1–64 chars. */
export const UI_REQUEST_ID_PATTERN = "^[A-Za-z0-9_-]+$";

const slugRe = new RegExp(SLUG_PATTERN);
const entityRe = new RegExp(ENTITY_ID_PATTERN);
const offsetRe = new RegExp(OFFSET_PATTERN);
const uiRequestRe = new RegExp(UI_REQUEST_ID_PATTERN);

/** True when `value` is a valid org or project id. */
export function isSlug(value: string): boolean {
  return slugRe.test(value);
}

/** True when `value` is a valid session or run id. */
export function isEntityId(value: string): boolean {
  return entityRe.test(value);
}

/** True when `value` is a valid extension UI request id ({@link UI_REQUEST_ID_PATTERN}). */
export function isUiRequestId(value: string): boolean {
  return value.length <= 64 && uiRequestRe.test(value);
}

/** Largest part of a Redis stream entry id: both `<ms>` and `<seq>` are unsigned 64-bit. */
const STREAM_ID_PART_MAX = 18446744073709551615n;

/**
 * True when `value` is an entry id Redis accepts (`<ms>-<seq>`, each part at most 2^64 − 1;
 * Redis answers "Invalid stream ID" beyond that, so such a value must be refused as bad input).
 */
export function isStreamId(value: string): boolean {
  if (value === "0" || !offsetRe.test(value)) return false;
  const [ms = "", seq = ""] = value.split("-");
  return BigInt(ms) <= STREAM_ID_PART_MAX && BigInt(seq) <= STREAM_ID_PART_MAX;
}

/** True when `value` is a valid stream offset (`0`, or an entry id as {@link isStreamId}). */
export function isOffset(value: string): boolean {
  return value === "0" || isStreamId(value);
}

/**
 * Turns a human project name into a slug id ("My Cool App" → "my-cool-app").
 * Returns undefined when nothing usable remains (e.g. a name of only punctuation).
 */
export function slugify(name: string): string | undefined {
  const slug = name
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/g, "");
  return slug && slugRe.test(slug) ? slug : undefined;
}

/** The org served in open mode (no API keys configured). */
export const DEFAULT_ORG = "default";
