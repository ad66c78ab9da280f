// Envelope encryption of stored secrets: AES-256-GCM round trip, tamper and wrong-key detection,
// context binding, key loading from the environment or a file, one-line errors naming the
// variable, and no key material in anything printable.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { ConfigError, loadEnv } from "@pi-fleet/config";
import {
  loadSecretKey,
  SecretBox,
  SecretBoxError,
  secretBoxFromEnv,
  unencryptedSecretsMessage,
  unencryptedSecretsWarning,
} from "@pi-fleet/security";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const SECRET = "sk-live-0123456789abcdef";
const CTX = "provider-credential:default:openai";

function errorOf(fn: () => unknown): SecretBoxError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretBoxError);
    return err as SecretBoxError;
  }
  throw new Error("expected a SecretBoxError");
}

/** Flips one bit of the base64url part `index` (0 kid … 3 ciphertext) of a sealed string. */
function flip(sealed: string, index: number): string {
  const parts = sealed.split(":");
  const at = 2 + index;
  const bytes = Buffer.from(parts[at] ?? "", "base64url");
  bytes[0] = (bytes[0] ?? 0) ^ 1;
  parts[at] = bytes.toString("base64url");
  return parts.join(":");
}

describe("SecretBox", () => {
  const key = randomBytes(32);
  const box = new SecretBox({ key, allowPlaintext: false });

  it("round-trips, with a fresh IV per seal and a key id prefix", () => {
    const a = box.seal(SECRET, CTX);
    const b = box.seal(SECRET, CTX);
    expect(a).toMatch(/^enc:v1:[0-9a-f]{8}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]+$/);
    expect(a.split(":")[2]).toBe(box.keyId);
    expect(a).not.toBe(b);
    expect(a).not.toContain(SECRET);
    expect(box.open(a, CTX)).toBe(SECRET);
    expect(box.open(b, CTX)).toBe(SECRET);
    expect(box.open(box.seal("", CTX), CTX)).toBe("");
    expect(box.open(box.seal("ключ ✓", CTX), CTX)).toBe("ключ ✓");
    expect(box.encrypted).toBe(true);
  });

  it("detects tampering with the tag, the IV or the ciphertext", () => {
    const sealed = box.seal(SECRET, CTX);
    for (const part of [1, 2, 3]) {
      expect(errorOf(() => box.open(flip(sealed, part), CTX)).code).toBe("tampered");
    }
    expect(errorOf(() => box.open(`${sealed.slice(0, -2)}`, CTX)).code).toBe("tampered");
    expect(errorOf(() => box.open("enc:v1:zz:bad", CTX)).code).toBe("tampered");
  });

  it("binds the context: a value moved to another org or provider does not open", () => {
    const sealed = box.seal(SECRET, CTX);
    expect(errorOf(() => box.open(sealed, "provider-credential:other:openai")).code).toBe("tampered");
    expect(errorOf(() => box.open(sealed, "provider-credential:default:anthropic")).code).toBe("tampered");
  });

  it("refuses a value sealed with another key, and one that claims this key's id", () => {
    const other = new SecretBox({ key: randomBytes(32), allowPlaintext: false });
    const sealed = other.seal(SECRET, CTX);
    const err = errorOf(() => box.open(sealed, CTX));
    expect(err.code).toBe("key_unknown");
    expect(err.message).toContain(other.keyId);
    // Same shape, this box's key id, the other key's ciphertext: authentication fails.
    const forged = sealed.replace(`:${other.keyId}:`, `:${box.keyId}:`);
    expect(errorOf(() => box.open(forged, CTX)).code).toBe("tampered");
    // No key at all.
    const keyless = new SecretBox({ allowPlaintext: true });
    expect(errorOf(() => keyless.open(sealed, CTX)).message).toContain("PI_FLEET_SECRET_KEY is not set");
  });

  it("opens values of previous keys (rotation)", () => {
    const old = randomBytes(32);
    const sealed = new SecretBox({ key: old, allowPlaintext: false }).seal(SECRET, CTX);
    const rotated = new SecretBox({ key, previousKeys: [old], allowPlaintext: false });
    expect(rotated.open(sealed, CTX)).toBe(SECRET);
    expect(rotated.seal(SECRET, CTX).split(":")[2]).toBe(box.keyId);
  });

  it("without a key: `plain:` in open mode, refused otherwise", () => {
    const open = new SecretBox({ allowPlaintext: true });
    expect(open.encrypted).toBe(false);
    const stored = open.seal(SECRET, CTX);
    expect(stored).toBe(`plain:${SECRET}`);
    expect(open.open(stored, CTX)).toBe(SECRET);
    // A box with a key still reads plain values written before the key was configured.
    expect(box.open(stored, CTX)).toBe(SECRET);
    const strict = new SecretBox({ allowPlaintext: false });
    const err = errorOf(() => strict.seal(SECRET, CTX));
    expect(err.code).toBe("key_required");
    expect(err.message).toContain("PI_FLEET_SECRET_KEY");
  });

  it("reads legacy plaintext only when asked to", () => {
    expect(errorOf(() => box.open(SECRET, CTX)).code).toBe("not_sealed");
    expect(box.open(SECRET, CTX, { allowLegacyPlaintext: true })).toBe(SECRET);
    expect(SecretBox.isSealed(SECRET)).toBe(false);
    expect(SecretBox.isSealed(box.seal(SECRET, CTX))).toBe(true);
  });

  it("never prints key material, and errors never carry the secret", () => {
    const printed = [JSON.stringify(box), inspect(box), String(box), JSON.stringify({ box })].join(" ");
    for (const encoding of ["hex", "base64", "base64url"] as const) {
      expect(printed).not.toContain(key.toString(encoding));
    }
    expect(JSON.parse(JSON.stringify(box))).toEqual({ encrypted: true, keyId: box.keyId });
    const sealOnly = box.sealOnly();
    expect(Object.keys(sealOnly).sort()).toEqual(["encrypted", "seal"]);
    expect(box.open(sealOnly.seal(SECRET, CTX), CTX)).toBe(SECRET);
    const sealed = box.seal(SECRET, CTX);
    for (const bad of [flip(sealed, 3), `${sealed}x`, SECRET]) {
      expect(errorOf(() => box.open(bad, CTX)).message).not.toContain(SECRET);
    }
  });

  it("rejects keys that are not 32 bytes", () => {
    expect(errorOf(() => new SecretBox({ key: randomBytes(16), allowPlaintext: false })).code).toBe(
      "key_invalid",
    );
  });
});

describe("loadSecretKey / secretBoxFromEnv", () => {
  const key = randomBytes(32);
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pf-secret-box-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("accepts base64, base64url and hex", () => {
    expect(loadSecretKey({})).toBeUndefined();
    expect(loadSecretKey({ PI_FLEET_SECRET_KEY: "" })).toBeUndefined();
    for (const encoded of [key.toString("base64"), key.toString("base64url"), key.toString("hex")]) {
      expect(loadSecretKey({ PI_FLEET_SECRET_KEY: encoded })?.equals(key)).toBe(true);
    }
  });

  it("reads the key from a file: text (with a trailing newline) or 32 raw bytes", async () => {
    const text = join(dir, "key.txt");
    await writeFile(text, `${key.toString("base64")}\n`);
    const raw = join(dir, "key.bin");
    await writeFile(raw, key);
    for (const file of [text, raw]) {
      expect(loadSecretKey({ PI_FLEET_SECRET_KEY_FILE: file })?.equals(key)).toBe(true);
    }
    // Same key, same id: a value sealed with the env key opens with the file key.
    const fromEnv = secretBoxFromEnv({ PI_FLEET_SECRET_KEY: key.toString("hex") }, { allowPlaintext: false });
    const fromFile = secretBoxFromEnv({ PI_FLEET_SECRET_KEY_FILE: text }, { allowPlaintext: false });
    expect(fromFile.keyId).toBe(fromEnv.keyId);
    expect(fromFile.open(fromEnv.seal(SECRET, CTX), CTX)).toBe(SECRET);
  });

  it("fails with one line naming the variable, never echoing the value", async () => {
    const shortFile = join(dir, "short.txt");
    await writeFile(shortFile, randomBytes(16).toString("base64"));
    const cases: [Parameters<typeof loadSecretKey>[0], string][] = [
      [{ PI_FLEET_SECRET_KEY: "not a key!" }, "PI_FLEET_SECRET_KEY"],
      [{ PI_FLEET_SECRET_KEY: randomBytes(16).toString("base64") }, "PI_FLEET_SECRET_KEY"],
      [{ PI_FLEET_SECRET_KEY: randomBytes(33).toString("hex") }, "PI_FLEET_SECRET_KEY"],
      [{ PI_FLEET_SECRET_KEY_FILE: shortFile }, "PI_FLEET_SECRET_KEY_FILE"],
      [{ PI_FLEET_SECRET_KEY_FILE: join(dir, "missing") }, "PI_FLEET_SECRET_KEY_FILE"],
      [{ PI_FLEET_SECRET_KEY: key.toString("hex"), PI_FLEET_SECRET_KEY_FILE: shortFile }, "both set"],
    ];
    for (const [source, expected] of cases) {
      const err = errorOf(() => loadSecretKey(source));
      expect(err.code).toBe("key_invalid");
      expect(err.message).toContain(expected);
      expect(err.message).not.toContain("\n");
      if (source.PI_FLEET_SECRET_KEY) expect(err.message).not.toContain(source.PI_FLEET_SECRET_KEY);
    }
  });

  it("loadEnv validates the key's shape with one line naming the variable", () => {
    expect(loadEnv({ PI_FLEET_SECRET_KEY: key.toString("base64") }).PI_FLEET_SECRET_KEY).toBe(
      key.toString("base64"),
    );
    for (const env of [
      { PI_FLEET_SECRET_KEY: "tooshort" },
      { PI_FLEET_SECRET_KEY: randomBytes(32).toString("hex").slice(1) },
      { PI_FLEET_SECRET_KEY: key.toString("hex"), PI_FLEET_SECRET_KEY_FILE: "/etc/key" },
      { PI_FLEET_SECRET_KEY_FILE: join(dir, "missing") },
    ] as Record<string, string>[]) {
      let error: unknown;
      try {
        loadEnv(env);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message).toContain("PI_FLEET_SECRET_KEY");
      expect(message).not.toContain("\n");
      if (env.PI_FLEET_SECRET_KEY) expect(message).not.toContain(env.PI_FLEET_SECRET_KEY);
    }
  });

  it("warns about unencrypted storage once per process, and never for an encrypting box", () => {
    const encrypting = new SecretBox({ key, allowPlaintext: false });
    expect(unencryptedSecretsWarning(encrypting)).toBeUndefined();
    const plain = new SecretBox({ allowPlaintext: true });
    const first = unencryptedSecretsWarning(plain);
    expect(first).toContain("PI_FLEET_SECRET_KEY is unset");
    expect(unencryptedSecretsWarning(plain)).toBeUndefined();
  });

  it("words the warning for the mode: keyed mode refuses to store keys, it never says they are stored", () => {
    expect(unencryptedSecretsMessage("open")).toContain("stored unencrypted");
    const keyed = unencryptedSecretsMessage("keyed");
    expect(keyed).toContain("cannot be stored through the API until it is set");
    expect(keyed).toContain("PF_ERR_SECRET_KEY_REQUIRED");
    expect(keyed).not.toContain("stored unencrypted");
    // A process that cannot tell (a worker without PI_FLEET_ADMIN_TOKEN) says what each mode does.
    expect(unencryptedSecretsMessage(undefined)).toMatch(/open mode .* unencrypted.*keyed mode refuses/);
    // The mode comes from PI_FLEET_ADMIN_TOKEN when set, else from the caller.
    const token = "t".repeat(24);
    expect(secretBoxFromEnv({ PI_FLEET_ADMIN_TOKEN: token }, { allowPlaintext: true }).mode).toBe("keyed");
    expect(secretBoxFromEnv({}, { allowPlaintext: true, mode: "open" }).mode).toBe("open");
    expect(secretBoxFromEnv({}, { allowPlaintext: true }).mode).toBeUndefined();
    expect(
      JSON.stringify(secretBoxFromEnv({ PI_FLEET_ADMIN_TOKEN: token }, { allowPlaintext: true })),
    ).not.toContain(token);
  });
});
