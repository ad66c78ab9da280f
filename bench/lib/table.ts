/**
 * Tables for the benchmarks, as aligned text (terminal) and as markdown aligned the way
 * `biome format` writes it (so `bench/results/*.md` stay lint-clean). The first column is
 * left-aligned, the others right-aligned.
 */

export interface Table {
  title: string;
  headers: string[];
  rows: string[][];
  /** Lines printed under the table (plain text; markdown keeps them as a list). */
  notes?: string[];
}

const cell = (row: readonly string[], c: number): string => row[c] ?? "";

function widths(t: Table, min: number): number[] {
  const lines = [t.headers, ...t.rows];
  return t.headers.map((_, c) => Math.max(min, ...lines.map((l) => cell(l, c).length)));
}

const pad = (text: string, width: number, c: number): string =>
  c === 0 ? text.padEnd(width) : text.padStart(width);

export function textTable(t: Table): string {
  const w = widths(t, 0);
  const fmt = (l: readonly string[]): string =>
    t.headers
      .map((_, c) => pad(cell(l, c), w[c] ?? 0, c))
      .join("  ")
      .trimEnd();
  const rule = w.map((n) => "─".repeat(n)).join("  ");
  const notes = (t.notes ?? []).map((n) => `  - ${n}`);
  return [
    t.title,
    "",
    fmt(t.headers),
    rule,
    ...t.rows.map(fmt),
    ...(notes.length ? ["", ...notes] : []),
  ].join("\n");
}

export function markdownTable(t: Table): string {
  const w = widths(t, 3);
  const fmt = (l: readonly string[]): string =>
    `| ${t.headers.map((_, c) => pad(cell(l, c), w[c] ?? 0, c)).join(" | ")} |`;
  const align = `| ${w.map((n, c) => (c === 0 ? `:${"-".repeat(n - 1)}` : `${"-".repeat(n - 1)}:`)).join(" | ")} |`;
  const notes = t.notes ?? [];
  return [
    `### ${t.title}`,
    "",
    fmt(t.headers),
    align,
    ...t.rows.map(fmt),
    ...(notes.length ? ["", ...notes.map((n) => `- ${n}`)] : []),
  ].join("\n");
}
