/** `pifleet projects ls | create <name> | rm <id>`. */
import type { CommandUnknownOpts } from "@commander-js/extra-typings";
import { confirmOrYes, formatTime } from "../args.ts";
import type { Context } from "../context.ts";

/** Registers the `projects` command group on `root`. */
export function registerProjects(root: CommandUnknownOpts, context: () => Context): void {
  const projects = root
    .command("projects")
    .description("list, create and delete projects")
    .addHelpText(
      "after",
      `
Examples:
  pifleet projects ls
  pifleet projects create "Demo App"     # prints the id: demo-app
  pifleet projects rm demo-app --yes`,
    );

  projects
    .command("ls")
    .alias("list")
    .description("list the org's projects, newest first")
    .action(async () => {
      const ctx = context();
      const data = await ctx.call("cannot list the projects", (api) => api.GET("/v1/projects"));
      ctx.out.result(data, ({ projects: list }) =>
        ctx.out.table(
          ["ID", "NAME", "CREATED"],
          list.map((p) => [p.id, p.name, formatTime(p.createdAt)]),
          "no projects yet: pifleet projects create <name>",
        ),
      );
    });

  projects
    .command("create")
    .description("create a project, or get the one with that name (prints its id)")
    .argument("<name>", "display name; the id is derived from it (`Demo App` → demo-app)")
    .action(async (name) => {
      const ctx = context();
      const project = await ctx.call("cannot create the project", (api) =>
        api.POST("/v1/projects", { body: { name } }),
      );
      ctx.out.result(project, (p) => {
        ctx.out.line(p.id);
        ctx.out.note(`project ${p.id} ("${p.name}")`);
      });
    });

  projects
    .command("rm")
    .alias("delete")
    .description("delete a project with all its sessions, streams, queued runs and files")
    .argument("<id>", "project id")
    .option("-y, --yes", "do not ask for confirmation (required when not on a terminal)")
    .action(async (id, opts) => {
      const ctx = context();
      await confirmOrYes(ctx, opts.yes, `Delete project ${id} with all its sessions and files?`);
      await ctx.call(`cannot delete project ${id}`, (api) =>
        api.DELETE("/v1/projects/{id}", { params: { path: { id } } }),
      );
      ctx.out.result({ ok: true, id }, () => ctx.out.line(`Deleted project ${id}.`));
    });
}
