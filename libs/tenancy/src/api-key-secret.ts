/**
 * The text form of an API key and its stored hash. A key is `pfk_<keyId>_<secret>`: `keyId` is 16
 * hex chars (public, names the key in lists and the audit log), `secret` 32 random bytes in
 * base64url. Only SHA-256(secret) is stored; comparison is constant-time (crypto.timingSafeEqual).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const KEY_RE = /^pfk_([a-f0-9]{16})_([A-Za-z0-9_-]{43})$/;

/** A freshly generated key: the text shown once, its id and the hash to store. */
export interface GeneratedApiKey {
  keyId: string;
  /** The full key text (`pfk_<keyId>_<secret>`): return it once, never store or log it. */
  key: string;
  /** Hex SHA-256 of the secret part. */
  hash: string;
}

/** Generates a new key from 8 + 32 random bytes. */
export function generateApiKey(): GeneratedApiKey {
  const keyId = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { keyId, key: `pfk_${keyId}_${secret}`, hash: hashSecret(secret) };
}

/** Splits a presented key into id and secret; undefined when it is not a pi-fleet key. */
export function parseApiKey(text: string): { keyId: string; secret: string } | undefined {
  const m = KEY_RE.exec(text);
  return m ? { keyId: m[1] as string, secret: m[2] as string } : undefined;
}

/** Hex SHA-256 of a secret. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/** Constant-time check of `secret` against a stored hex hash (false for malformed hashes). */
export function secretMatches(secret: string, storedHash: string): boolean {
  const expected = Buffer.from(storedHash, "hex");
  const actual = createHash("sha256").update(secret, "utf8").digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/**
 * Constant-time comparison of two tokens of any length (the operator token): both are hashed
 * first, so neither the content nor the length leaks through timing.
 */
export function tokensEqual(presented: string, expected: string): boolean {
  const a = createHash("sha256").update(presented, "utf8").digest();
  const b = createHash("sha256").update(expected, "utf8").digest();
  return timingSafeEqual(a, b);
}
