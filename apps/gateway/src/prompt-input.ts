/**
 * Validation of what a user sends into a session (prompt, steer, follow-up): the text length and
 * the images (count, strict base64, decoded size), plus the body limit of the routes that take
 * images. The schema already checks shapes and `mimeType`; these limits come from config.
 */
import type { Env } from "@pi-fleet/config";
import { ApiError } from "@pi-fleet/contracts";

/** An image as it travels to the worker (job or control message) and into pi: base64 + mime type. */
export interface InputImage {
  data: string;
  mimeType: string;
}

/** Text and images of one prompt / steer / follow-up, validated. */
export interface UserInput {
  text: string;
  /** Absent when the request carried none. */
  images?: InputImage[];
}

/** Standard base64 alphabet, `=` padding only at the end (length checked apart). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Bytes a JSON image entry adds around its base64 (`{"type":"image","data":"","mimeType":"image/jpeg"},`). */
const IMAGE_JSON_OVERHEAD = 128;

/**
 * Body limit (bytes) of the routes that take images: `PI_FLEET_MAX_BODY_BYTES` for the text and
 * JSON, plus the base64 size of `PI_FLEET_MAX_IMAGES` images of `PI_FLEET_MAX_IMAGE_BYTES`. With
 * the defaults (1 MiB, 8 × 5 MiB) about 54.3 MiB. Every other route keeps PI_FLEET_MAX_BODY_BYTES.
 */
export function inputBodyLimit(env: Env): number {
  const perImage = 4 * Math.ceil(env.PI_FLEET_MAX_IMAGE_BYTES / 3) + IMAGE_JSON_OVERHEAD;
  return env.PI_FLEET_MAX_BODY_BYTES + env.PI_FLEET_MAX_IMAGES * perImage;
}

/**
 * Decoded length of strict standard base64 (RFC 4648 §4: padded to a multiple of 4, no
 * whitespace, zero pad bits), or undefined when `data` is not that.
 */
export function strictBase64Length(data: string): number | undefined {
  if (data.length === 0 || data.length % 4 !== 0 || !BASE64.test(data)) return undefined;
  const pad = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0;
  // Canonical form: the last quantum re-encodes to itself (no stray bits before the padding).
  const last = data.slice(-4);
  if (Buffer.from(last, "base64").toString("base64") !== last) return undefined;
  return (data.length / 4) * 3 - pad;
}

/**
 * Checks the text and images of a prompt / steer / follow-up against the configured limits and
 * returns them as sent to the worker (pi's optional `type` dropped; `images` absent when empty).
 * @throws ApiError 413 `PF_ERR_REQUEST_TOO_LARGE` for text over PI_FLEET_MAX_PROMPT_CHARS, more
 *   than PI_FLEET_MAX_IMAGES images or one over PI_FLEET_MAX_IMAGE_BYTES decoded; 400
 *   `PF_ERR_REQUEST_INVALID` for data that is not strict base64 (`details.path` names the image)
 */
export function validateUserInput(
  env: Env,
  body: { text: string; images?: { data: string; mimeType: string }[] },
  what = "text",
): UserInput {
  const { text, images } = body;
  if (text.length > env.PI_FLEET_MAX_PROMPT_CHARS) {
    throw new ApiError(
      "PF_ERR_REQUEST_TOO_LARGE",
      `${what} exceeds ${env.PI_FLEET_MAX_PROMPT_CHARS} characters`,
    );
  }
  if (!images || images.length === 0) return { text };
  if (images.length > env.PI_FLEET_MAX_IMAGES) {
    throw new ApiError(
      "PF_ERR_REQUEST_TOO_LARGE",
      `at most ${env.PI_FLEET_MAX_IMAGES} image${env.PI_FLEET_MAX_IMAGES === 1 ? "" : "s"} per message (got ${images.length})`,
    );
  }
  const out: InputImage[] = [];
  for (const [i, image] of images.entries()) {
    const size = strictBase64Length(image.data);
    if (size === undefined) {
      throw new ApiError(
        "PF_ERR_REQUEST_INVALID",
        `images[${i}].data is not valid base64 (standard alphabet, padded, no whitespace)`,
        [{ path: `/body/images/${i}/data`, message: "must be base64" }],
      );
    }
    if (size > env.PI_FLEET_MAX_IMAGE_BYTES) {
      throw new ApiError(
        "PF_ERR_REQUEST_TOO_LARGE",
        `images[${i}] is ${size} bytes; at most ${env.PI_FLEET_MAX_IMAGE_BYTES} bytes per image`,
      );
    }
    out.push({ data: image.data, mimeType: image.mimeType });
  }
  return { text, images: out };
}
