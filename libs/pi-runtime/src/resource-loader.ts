// A pi ResourceLoader that discovers nothing: no extensions, skills, prompt templates or themes
// from the tenant's project or the worker's home (hazard H1), and only the context files it is
// given (hazard H2). pi builds its default coding-agent system prompt around them.
import { createExtensionRuntime, type ResourceLoader } from "@earendil-works/pi-coding-agent";
import type { AgentsFile } from "./project-context.ts";

/**
 * A loader returning `agentsFiles` as project context and `undefined` as system prompt (pi's
 * default prompt: tools, rules, pi docs paths, project context, cwd). reload() is a no-op.
 */
export function createIsolatedResourceLoader(agentsFiles: readonly AgentsFile[]): ResourceLoader {
  const files = agentsFiles.map((f) => ({ path: f.path, content: f.content }));
  const extensions = { extensions: [], errors: [], runtime: createExtensionRuntime() };
  return {
    getExtensions: () => extensions,
    getSkills: () => ({ skills: [], diagnostics: [] }),
    getPrompts: () => ({ prompts: [], diagnostics: [] }),
    getThemes: () => ({ themes: [], diagnostics: [] }),
    getAgentsFiles: () => ({ agentsFiles: files.map((f) => ({ ...f })) }),
    getSystemPrompt: () => undefined,
    getSystemPromptSource: () => undefined,
    getAppendSystemPrompt: () => [],
    getAppendSystemPromptSources: () => [],
    extendResources: () => {},
    reload: async () => {},
  };
}
