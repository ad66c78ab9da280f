/** `pifleet models`: the models the org can use. */
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";

/** `200000` → `200k`. */
function tokens(n: number): string {
  return n >= 1000 ? `${Math.round(n / 1000)}k` : String(n);
}

/** Registers `models` on `root`. */
export function registerModels(root: CommandUnknownOpts, context: () => Context): void {
  root
    .command("models")
    .summary("list the models the org can use")
    .description(
      "list the models the org can use (custom providers first); --all adds the known models whose provider has no key",
    )
    .option("--all", "also list unavailable models (no provider key configured)")
    .action(async (opts) => {
      const ctx = context();
      const data = await ctx.call("cannot list the models", (api) => api.GET("/v1/models"));
      const models = opts.all ? data.models : data.models.filter((m) => m.available);
      ctx.out.result({ models }, ({ models: list }) =>
        ctx.out.table(
          ["MODEL", "NAME", "AVAILABLE", "REASONING", "CONTEXT", "INPUT"],
          list.map((m) => [
            `${m.provider}/${m.id}`,
            m.name,
            m.available ? "yes" : "no",
            m.reasoning ? "yes" : "no",
            tokens(m.contextWindow),
            m.input.join(","),
          ]),
          opts.all
            ? "(none)"
            : "no available models: set a provider key or register a custom provider (--all lists every known model)",
        ),
      );
    });
}
