/** `pifleet login` / `pifleet logout`: the stored gateway URL and API key. */
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import {
  type Connection,
  clearConfig,
  DEFAULT_URL,
  loadConfig,
  maskKey,
  normalizeUrl,
  type StoredConfig,
  saveConfig,
} from "../config-store.ts";
import type { Context } from "../context.ts";
import { usageError } from "../errors.ts";
import { ask, askHidden, canAsk, readStdin } from "../terminal.ts";

/** Notes that environment variables override what is stored. */
function envOverrides(ctx: Context): void {
  const { env } = ctx.io;
  if (env.PIFLEET_URL) ctx.out.note("note: PIFLEET_URL is set and overrides the stored URL");
  if (env.PIFLEET_KEY !== undefined) ctx.out.note("note: PIFLEET_KEY is set and overrides the stored key");
}

/** Registers `login` and `logout` on `root`. */
export function registerAuth(root: CommandUnknownOpts, context: () => Context): void {
  root
    .command("login")
    .summary("store the gateway URL and API key")
    .description("store the gateway URL and API key used by the other commands")
    .option("--url <url>", `gateway URL (default: PIFLEET_URL, the stored URL, or ${DEFAULT_URL})`)
    .option("--key <key>", "org API key; `-` reads it from stdin (keeps it out of your shell history)")
    .option("--no-key", "store no key (open mode: the gateway needs none)")
    .option("--no-verify", "store without checking that the gateway accepts the credentials")
    .addHelpText(
      "after",
      `
Without --url / --key on a terminal, login asks for them (the key is not echoed).
The config file (mode 0600) is config.json in the user's config dir: $XDG_CONFIG_HOME/pifleet or
~/.config/pifleet on Linux (PIFLEET_CONFIG_DIR overrides), a dir kept at 0700 (login tightens it).
PIFLEET_URL and PIFLEET_KEY override it.

Examples:
  pifleet login                                   # asks
  pifleet login --url https://fleet.example.com --key - < key.txt
  pifleet login --url http://127.0.0.1:4001 --no-key`,
    )
    .action(async (opts) => {
      const ctx = context();
      const { io, out } = ctx;
      const interactive = canAsk(io) && !out.json;
      const dir = ctx.configDir;
      let stored: StoredConfig = {};
      try {
        stored = await loadConfig(dir);
      } catch {
        // A broken config file is what login replaces.
      }
      let rawUrl = opts.url;
      if (rawUrl === undefined) {
        const fallback = io.env.PIFLEET_URL || stored.url || DEFAULT_URL;
        rawUrl = interactive
          ? ((await ask(io, `Gateway URL [${fallback}]: `, fallback)) ?? fallback)
          : fallback;
      }
      const url = normalizeUrl(rawUrl);
      let key: string | undefined;
      if (opts.key === "-") key = (await readStdin(io)).trim();
      else if (typeof opts.key === "string") key = opts.key.trim();
      else if (opts.key === undefined && interactive) {
        key = (await askHidden(io, "API key (empty for open mode): ")).trim();
      }
      if (key === "") key = undefined;
      if (key !== undefined && /\s/.test(key)) throw usageError("the API key contains whitespace");

      const conn: Connection = {
        url,
        key,
        urlSource: "config",
        keySource: key === undefined ? "none" : "config",
      };
      if (opts.verify) {
        await ctx.call("the gateway refused the credentials", (api) => api.GET("/v1/projects"), {
          conn,
          progress: `checking ${url}…`,
        });
      }
      const file = await saveConfig(dir, key === undefined ? { url } : { url, key }, (note) =>
        out.note(note, "yellow"),
      );
      out.result({ url, keyConfigured: key !== undefined, verified: opts.verify, configPath: file }, () => {
        out.line(`Logged in to ${url} with ${maskKey(key)}${opts.verify ? "" : " (not verified)"}.`);
        out.note(`saved to ${file}`);
      });
      envOverrides(ctx);
    });

  root
    .command("logout")
    .summary("forget the stored URL and key")
    .description("delete the stored gateway URL and API key")
    .action(async () => {
      const ctx = context();
      const dir = ctx.configDir;
      const removed = await clearConfig(dir);
      const { out } = ctx;
      out.result({ removed, configPath: `${dir}/config.json` }, () => {
        out.line(removed ? `Logged out (removed ${dir}/config.json).` : "Not logged in: nothing stored.");
      });
      envOverrides(ctx);
    });
}
