// export_html: pi's HTML exporter (AgentSession.exportToHtml), written into a private temp dir,
// read back, scrubbed of server paths and returned inline: the fleet never writes to or names a
// server path for the client.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withoutPath } from "../errors.ts";
import { publicExportHtml } from "../sanitize.ts";
import { busy, CommandArgError, type CommandHandler, ok } from "./support.ts";

/**
 * Largest page export_html answers with, in bytes. The answer travels back to the gateway as one
 * Redis pub/sub message, and Redis drops a subscriber whose output buffer passes 32 MB (its
 * default hard limit for pub/sub clients).
 */
export const EXPORT_HTML_MAX_BYTES = 16 * 1024 * 1024;

/**
 * `export_html` → `{html}`: the whole self-contained page pi's exporter renders for the session
 * (theme, tree navigation, the entries of every branch), instead of pi's `{path}`. The embedded
 * session data loses the header's `cwd` and `parentSession`, the system prompt and the server
 * paths of entries, and its header names the session by its fleet id (see publicExportHtml);
 * what the conversation itself says is kept as is.
 * "invalid" when `outputPath` is given (no server paths); "busy" during a run; pi's "Nothing to
 * export yet - start a conversation first" before the first assistant answer; an error when the
 * page is larger than EXPORT_HTML_MAX_BYTES.
 */
const exportHtml: CommandHandler = async ({ session, sessionId, busy: running }, request) => {
  if (request.outputPath != null) {
    throw new CommandArgError(
      `${request.type}: "outputPath" is not accepted: the HTML is returned in the response`,
    );
  }
  if (running) return busy(request.type);
  // A dir of its own (mode 0700), not the session's bash TMPDIR, which the agent's tools can read.
  const dir = await mkdtemp(join(tmpdir(), "pf-export-"));
  try {
    let html: string;
    try {
      html = await readFile(await session.exportToHtml(join(dir, "session.html")), "utf8");
    } catch (err) {
      throw withoutPath(err, "Could not export the session");
    }
    const page = publicExportHtml(html, sessionId);
    const bytes = Buffer.byteLength(page);
    if (bytes > EXPORT_HTML_MAX_BYTES) {
      const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
      throw new Error(`The exported page is ${mib(bytes)}, over the limit of ${mib(EXPORT_HTML_MAX_BYTES)}`);
    }
    return ok({ html: page });
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
};

/** Handlers of the export group, by command type. */
export const exportCommands: Record<string, CommandHandler> = {
  export_html: exportHtml,
};
