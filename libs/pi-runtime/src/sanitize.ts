// Removes server paths from what pi hands out about a session: the system prompt (it names the
// cwd and pi's install paths), the overflow log path of user bash commands, and the system
// snapshot stored with compactions, and the same from the session data of an HTML export (whose
// header also names the session by its fleet id, not pi's).
// Inputs are never mutated; only changed objects are copied.
import type { AgentMessage } from "@earendil-works/pi-agent-core";
import type { SessionEntry, SessionTreeNode } from "@earendil-works/pi-coding-agent";

/** Context messages as the fleet shows them: no `system` messages, no `fullOutputPath`. */
export function publicMessages(messages: readonly AgentMessage[]): AgentMessage[] {
  return messages.filter((m) => m.role !== "system").map(publicMessage);
}

/** A message without server paths (a `bashExecution` loses `fullOutputPath`). */
function publicMessage(message: AgentMessage): AgentMessage {
  if (message.role !== "bashExecution" || message.fullOutputPath === undefined) return message;
  const { fullOutputPath: _path, ...rest } = message;
  return rest;
}

/**
 * A message as live events show it: a `system` message keeps only `role`, empty `content` and
 * `timestamp` (it names the cwd and pi's install paths), a `bashExecution` loses `fullOutputPath`.
 */
export function publicEventMessage(message: AgentMessage): AgentMessage {
  if (message.role === "system") return { role: "system", content: "", timestamp: message.timestamp };
  return publicMessage(message);
}

/**
 * A session entry without server paths. System message entries keep their place in the tree
 * (ids and parentIds stay valid) but only `role`, empty `content` and `timestamp`; compaction
 * entries lose `systemMessage`.
 */
export function publicEntry(entry: SessionEntry): SessionEntry {
  if (entry.type === "message") {
    const m = entry.message;
    if (m.role === "system")
      return { ...entry, message: { role: "system", content: "", timestamp: m.timestamp } };
    const message = publicMessage(m);
    return message === m ? entry : { ...entry, message };
  }
  if (entry.type === "compaction" && entry.systemMessage !== undefined) {
    const { systemMessage: _system, ...rest } = entry;
    return rest;
  }
  return entry;
}

/** pi's session tree with every entry passed through publicEntry (iterative: trees are deep). */
export function publicTree(roots: readonly SessionTreeNode[]): SessionTreeNode[] {
  const out: SessionTreeNode[] = [];
  const work: { nodes: readonly SessionTreeNode[]; into: SessionTreeNode[] }[] = [
    { nodes: roots, into: out },
  ];
  for (let item = work.pop(); item; item = work.pop()) {
    for (const node of item.nodes) {
      const copy: SessionTreeNode = { ...node, entry: publicEntry(node.entry), children: [] };
      item.into.push(copy);
      if (node.children.length > 0) work.push({ nodes: node.children, into: copy.children });
    }
  }
  return out;
}

/** The `<script>` in which pi's HTML export embeds the session (base64 of UTF-8 JSON). */
const EXPORT_DATA = /(<script id="session-data" type="application\/json">)([A-Za-z0-9+/=]*)(<\/script>)/;

/**
 * pi's exported HTML page with server paths removed from its embedded session data: the header
 * keeps only `type`, `version`, `id` and `timestamp` (no `cwd`, no `parentSession`), with `id`
 * the fleet session id `sessionId` instead of pi's header id; every entry goes through
 * publicEntry, and the system prompt (it names the cwd and pi's install paths) is dropped.
 * `leafId`, `tools` and `renderedTools` are kept. Paths the conversation itself contains (tool
 * arguments and results) are not touched.
 * @throws Error when the page has no embedded session data (an exporter this code does not know)
 */
export function publicExportHtml(html: string, sessionId: string): string {
  const match = EXPORT_DATA.exec(html);
  if (!match) throw new Error("Unexpected HTML export: no embedded session data");
  const data = JSON.parse(Buffer.from(match[2] ?? "", "base64").toString("utf8")) as {
    header?: { type?: unknown; version?: unknown; id?: unknown; timestamp?: unknown } | null;
    entries?: SessionEntry[];
    systemPrompt?: unknown;
    [key: string]: unknown;
  };
  const { systemPrompt: _prompt, header, entries, ...rest } = data;
  const clean = {
    ...rest,
    header: header
      ? { type: header.type, version: header.version, id: sessionId, timestamp: header.timestamp }
      : null,
    entries: (entries ?? []).map(publicEntry),
  };
  const encoded = Buffer.from(JSON.stringify(clean), "utf8").toString("base64");
  // A function replacement: "$" sequences in the data must not be interpreted.
  return html.replace(
    EXPORT_DATA,
    (_all, open: string, _data: string, close: string) => open + encoded + close,
  );
}
