/**
 * Envelope encryption of stored secrets (provider API keys) with AES-256-GCM. The only module of
 * pi-fleet that touches key material: callers hand it plaintext and get an opaque string back.
 *
 * Stored forms (the prefix says which):
 *   enc:v1:<kid>:<iv>:<tag>:<ciphertext>   AES-256-GCM, random 12-byte IV per secret, 16-byte tag,
 *                                          base64url parts; `kid` = 8 hex chars identifying the key
 *                                          (an HMAC of a fixed label, it reveals nothing about it)
 *   plain:<secret>                         no key configured (open mode only, see `allowPlaintext`)
 * Anything else is a legacy plaintext value written before sealing existed; `open` returns it only
 * when asked to (`allowLegacyPlaintext`). The caller's `context` (for example `provider-key:<org>:
 * <provider>`) is bound as additional authenticated data, so a sealed value copied to another
 * org's or provider's slot in Redis fails to open instead of lending its key.
 *
 * The 32-byte key comes from `PI_FLEET_SECRET_KEY` (base64 or hex) or `PI_FLEET_SECRET_KEY_FILE`
 * (a file holding the base64/hex text or the 32 raw bytes). Keys can rotate later: `open` accepts
 * every key passed as `previousKeys`, selected by the `kid` in the stored string.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { inspect } from "node:util";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ENC_PREFIX = "enc:v1:";
const PLAIN_PREFIX = "plain:";
const HEX_KEY_RE = /^[0-9a-fA-F]{64}$/;
const BASE64_RE = /^[A-Za-z0-9+/_-]+={0,2}$/;
const B64URL_RE = /^[A-Za-z0-9_-]*$/;

/** Why a secret operation failed. Messages never contain a secret or key bytes. */
export type SecretBoxErrorCode =
  /** `PI_FLEET_SECRET_KEY` / `PI_FLEET_SECRET_KEY_FILE` is malformed, unreadable or both are set. */
  | "key_invalid"
  /** Storing a secret was refused: no key is configured and plaintext storage is not allowed. */
  | "key_required"
  /** The value was sealed with a key this process does not have (or none is configured). */
  | "key_unknown"
  /** The stored value is malformed or fails authentication (tampered, wrong context). */
  | "tampered"
  /** The value is not in a sealed form and legacy plaintext was not allowed. */
  | "not_sealed";

/** A failed secret operation; `message` is one line and names the variable when config is at fault. */
export class SecretBoxError extends Error {
  override readonly name = "SecretBoxError";
  readonly code: SecretBoxErrorCode;

  constructor(code: SecretBoxErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The write half of a SecretBox: what a process that must never decrypt (the gateway) gets. */
export interface SecretSealer {
  /** True when secrets are encrypted; false when they are stored under the `plain:` marker. */
  readonly encrypted: boolean;
  /** Seals `plaintext` bound to `context`. @throws SecretBoxError "key_required" */
  seal(plaintext: string, context: string): string;
}

/** Options of {@link SecretBox.open}. */
export interface OpenOptions {
  /** Return a value without a known prefix as-is (secrets stored before sealing existed). */
  allowLegacyPlaintext?: boolean;
}

/** Where the key comes from: the two variables of the environment schema. */
export interface SecretKeySource {
  PI_FLEET_SECRET_KEY?: string | undefined;
  PI_FLEET_SECRET_KEY_FILE?: string | undefined;
  /**
   * The operator token: set = keyed mode, where storing a secret without a key is refused. Only
   * read to word the boot warning ({@link unencryptedSecretsWarning}); never kept.
   */
  PI_FLEET_ADMIN_TOKEN?: string | undefined;
}

/**
 * What a deployment does with secrets when no key is configured: `open` stores them under the
 * `plain:` marker, `keyed` refuses to store them. Undefined where the process cannot tell (a
 * worker started without `PI_FLEET_ADMIN_TOKEN`).
 */
export type SecretMode = "open" | "keyed";

/**
 * Seals and opens secrets. Holds the key in a private field; `toJSON` and `inspect` show only
 * whether it is encrypting and the key id, so a careless log line cannot print the key.
 */
export class SecretBox implements SecretSealer {
  readonly encrypted: boolean;
  /** Id of the current key (8 hex chars), or undefined when no key is configured. */
  readonly keyId: string | undefined;
  /** Whether `seal` may store `plain:` values when no key is configured (open mode). */
  readonly allowPlaintext: boolean;
  /** The deployment's mode when known (see {@link SecretMode}); words the boot warning only. */
  readonly mode: SecretMode | undefined;
  readonly #current: Buffer | undefined;
  readonly #byId: Map<string, Buffer>;

  /**
   * @param opts.key the 32-byte current key; absent = no encryption (then `allowPlaintext` decides)
   * @param opts.previousKeys older keys still accepted by `open` (rotation)
   * @param opts.allowPlaintext store `plain:` values when no key is set (open mode only)
   * @param opts.mode the deployment's mode when known (words the boot warning only)
   * @throws SecretBoxError "key_invalid" when a key is not 32 bytes
   */
  constructor(opts: {
    key?: Buffer;
    previousKeys?: readonly Buffer[];
    allowPlaintext: boolean;
    mode?: SecretMode;
  }) {
    this.#byId = new Map();
    for (const k of [...(opts.previousKeys ?? []), ...(opts.key ? [opts.key] : [])]) {
      if (k.length !== KEY_BYTES)
        throw new SecretBoxError("key_invalid", `secret key must be ${KEY_BYTES} bytes`);
      this.#byId.set(keyIdOf(k), Buffer.from(k));
    }
    this.#current = opts.key ? Buffer.from(opts.key) : undefined;
    this.keyId = opts.key ? keyIdOf(opts.key) : undefined;
    this.encrypted = this.#current !== undefined;
    this.allowPlaintext = opts.allowPlaintext;
    this.mode = opts.mode;
  }

  /**
   * Seals `plaintext` bound to `context`: `enc:v1:…` with a key, `plain:…` without one when
   * plaintext is allowed. @throws SecretBoxError "key_required" when neither is possible
   */
  seal(plaintext: string, context: string): string {
    const key = this.#current;
    if (!key) {
      if (!this.allowPlaintext) {
        throw new SecretBoxError(
          "key_required",
          "refusing to store a secret: PI_FLEET_SECRET_KEY (or PI_FLEET_SECRET_KEY_FILE) is not set",
        );
      }
      return PLAIN_PREFIX + plaintext;
    }
    const kid = keyIdOf(key);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(kid, context));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    const tag = cipher.getAuthTag();
    return `${ENC_PREFIX}${kid}:${b64url(iv)}:${b64url(tag)}:${b64url(ciphertext)}`;
  }

  /**
   * Opens a value produced by `seal` with the same `context`.
   * @throws SecretBoxError "key_unknown" (sealed with a key not configured here), "tampered"
   *   (malformed, modified, or sealed for another context), "not_sealed" (no known prefix and
   *   `allowLegacyPlaintext` not set)
   */
  open(stored: string, context: string, opts: OpenOptions = {}): string {
    if (stored.startsWith(PLAIN_PREFIX)) return stored.slice(PLAIN_PREFIX.length);
    if (!stored.startsWith(ENC_PREFIX)) {
      if (opts.allowLegacyPlaintext) return stored;
      throw new SecretBoxError("not_sealed", "stored secret is not in a sealed form");
    }
    const parts = stored.slice(ENC_PREFIX.length).split(":");
    const [kid, ivText, tagText, ctText] = parts;
    if (
      parts.length !== 4 ||
      kid === undefined ||
      ivText === undefined ||
      tagText === undefined ||
      ctText === undefined ||
      !/^[0-9a-f]{8}$/.test(kid) ||
      ![ivText, tagText, ctText].every((p) => B64URL_RE.test(p))
    ) {
      throw new SecretBoxError("tampered", "stored secret is malformed");
    }
    const key = this.#byId.get(kid);
    if (!key) {
      throw new SecretBoxError(
        "key_unknown",
        this.encrypted
          ? `stored secret was sealed with key id ${kid}, which is not configured (PI_FLEET_SECRET_KEY holds key id ${this.keyId})`
          : `stored secret was sealed with key id ${kid} but PI_FLEET_SECRET_KEY is not set`,
      );
    }
    // Canonical encodings only: base64url decoding ignores stray trailing characters.
    const [iv, tag, ciphertext] = [ivText, tagText, ctText].map((p) => Buffer.from(p, "base64url"));
    if (
      !iv ||
      !tag ||
      !ciphertext ||
      iv.length !== IV_BYTES ||
      tag.length !== TAG_BYTES ||
      b64url(iv) !== ivText ||
      b64url(tag) !== tagText ||
      b64url(ciphertext) !== ctText
    ) {
      throw new SecretBoxError("tampered", "stored secret is malformed");
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(kid, context));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString("utf8");
    } catch {
      throw new SecretBoxError("tampered", "stored secret failed authentication (tampered or wrong context)");
    }
  }

  /** True when `stored` is in one of the sealed forms (`enc:v1:` or `plain:`). */
  static isSealed(stored: string): boolean {
    return stored.startsWith(ENC_PREFIX) || stored.startsWith(PLAIN_PREFIX);
  }

  /** A view that can seal but not open (for processes that must never decrypt). */
  sealOnly(): SecretSealer {
    const encrypted = this.encrypted;
    return { encrypted, seal: (plaintext, context) => this.seal(plaintext, context) };
  }

  toJSON(): { encrypted: boolean; keyId?: string } {
    return { encrypted: this.encrypted, ...(this.keyId ? { keyId: this.keyId } : {}) };
  }

  [inspect.custom](): string {
    return `SecretBox ${JSON.stringify(this.toJSON())}`;
  }
}

/**
 * Reads the 32-byte key from `PI_FLEET_SECRET_KEY` (64 hex chars or base64/base64url of 32 bytes)
 * or `PI_FLEET_SECRET_KEY_FILE` (that text, or exactly 32 raw bytes). Undefined when neither is set.
 * @throws SecretBoxError "key_invalid" with one line naming the variable (never its value)
 */
export function loadSecretKey(source: SecretKeySource): Buffer | undefined {
  const inline = source.PI_FLEET_SECRET_KEY || undefined;
  const file = source.PI_FLEET_SECRET_KEY_FILE || undefined;
  if (inline !== undefined && file !== undefined) {
    throw new SecretBoxError(
      "key_invalid",
      "invalid configuration: PI_FLEET_SECRET_KEY and PI_FLEET_SECRET_KEY_FILE are both set; set only one",
    );
  }
  if (inline !== undefined) return decodeKey(inline, "PI_FLEET_SECRET_KEY");
  if (file === undefined) return undefined;
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unreadable";
    throw new SecretBoxError(
      "key_invalid",
      `invalid configuration: PI_FLEET_SECRET_KEY_FILE cannot be read (${code})`,
    );
  }
  if (raw.length === KEY_BYTES) return raw;
  return decodeKey(raw.toString("utf8"), "PI_FLEET_SECRET_KEY_FILE");
}

/**
 * The process's SecretBox from the environment's key variables. `allowPlaintext` is true in open
 * mode (a single `default` org on loopback); a multi-tenant mode passes false so that storing a
 * secret without a key is refused. The box's `mode` is `keyed` when `PI_FLEET_ADMIN_TOKEN` is set,
 * else `opts.mode`. @throws SecretBoxError "key_invalid"
 */
export function secretBoxFromEnv(
  source: SecretKeySource,
  opts: { allowPlaintext: boolean; mode?: SecretMode },
): SecretBox {
  const key = loadSecretKey(source);
  const mode = source.PI_FLEET_ADMIN_TOKEN ? "keyed" : opts.mode;
  return new SecretBox({
    ...(key ? { key } : {}),
    allowPlaintext: opts.allowPlaintext,
    ...(mode ? { mode } : {}),
  });
}

/**
 * The boot warning for a deployment without a key, worded for its mode (undefined: not known to
 * this process, a worker started without `PI_FLEET_ADMIN_TOKEN`). Never contains a secret.
 */
export function unencryptedSecretsMessage(mode: SecretMode | undefined): string {
  switch (mode) {
    case "open":
      return "secrets (provider API keys) are stored unencrypted in Redis because PI_FLEET_SECRET_KEY is unset (open mode)";
    case "keyed":
      return (
        "PI_FLEET_SECRET_KEY is unset: provider API keys cannot be stored through the API until it is set " +
        "(PUT /v1/custom/providers with an apiKey and PUT /v1/auth/providers/{provider}/api-key answer 503 PF_ERR_SECRET_KEY_REQUIRED)"
      );
    default:
      return (
        "PI_FLEET_SECRET_KEY is unset: in open mode provider API keys are stored unencrypted in Redis; " +
        "keyed mode refuses to store them, and keys sealed with a secret key cannot be opened here"
      );
  }
}

let warnedUnencrypted = false;

/**
 * The boot warning for a box without a key ({@link unencryptedSecretsMessage} for `mode`, default
 * the box's own), returned once per process (a single-node process starts a worker and a gateway
 * but warns once); undefined for an encrypting box and after the first time.
 */
export function unencryptedSecretsWarning(
  box: SecretSealer & { readonly mode?: SecretMode | undefined },
  mode: SecretMode | undefined = box.mode,
): string | undefined {
  if (box.encrypted || warnedUnencrypted) return undefined;
  warnedUnencrypted = true;
  return unencryptedSecretsMessage(mode);
}

function decodeKey(text: string, variable: string): Buffer {
  const value = text.trim();
  const invalid = (why: string) =>
    new SecretBoxError(
      "key_invalid",
      `invalid configuration: ${variable} must be a ${KEY_BYTES}-byte key, base64 or hex encoded (${why})`,
    );
  if (HEX_KEY_RE.test(value)) return Buffer.from(value, "hex");
  if (!BASE64_RE.test(value)) throw invalid("not base64 or hex");
  const key = Buffer.from(value.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (key.length !== KEY_BYTES) throw invalid(`decodes to ${key.length} bytes`);
  return key;
}

function keyIdOf(key: Buffer): string {
  return createHmac("sha256", key).update("pi-fleet secret key id").digest("hex").slice(0, 8);
}

function aad(kid: string, context: string): Buffer {
  return Buffer.from(`pi-fleet:v1:${kid}:${context}`, "utf8");
}

function b64url(buf: Buffer): string {
  return buf.toString("base64url");
}
