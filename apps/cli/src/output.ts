/**
 * Human versus machine output. With `--json`, stdout carries exactly one JSON document per
 * command (or NDJSON, one object per line, for streams) and nothing else; without it, stdout
 * carries readable text and tables. Notes, progress and errors always go to stderr, colours and
 * the spinner only to a terminal (`NO_COLOR` turns colours off, `FORCE_COLOR` on).
 */
import { styleText } from "node:util";
import ora, { type Ora } from "ora";
import type { CliError } from "./errors.ts";
import type { Io, OutStream } from "./io.ts";
import type { Chunk, Tone } from "./render-events.ts";

/** Delay before a spinner shows up, so quick requests do not flicker (ms). */
const SPINNER_DELAY_MS = 200;

/** Where and how the CLI writes. */
export class Output {
  readonly io: Io;
  /** `--json`: machine-readable stdout. */
  readonly json: boolean;
  private spinner: Ora | undefined;

  constructor(io: Io, json: boolean) {
    this.io = io;
    this.json = json;
  }

  /** Whether `stream` gets ANSI colours. */
  colors(stream: OutStream): boolean {
    const { env } = this.io;
    if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== "0";
    if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
    return stream.isTTY === true && env.TERM !== "dumb";
  }

  /** `text` in `tone` when `stream` takes colours. */
  paint(stream: OutStream, text: string, tone: Tone | undefined): string {
    if (tone === undefined || !this.colors(stream)) return text;
    // Style each line on its own so a trailing newline stays outside the escape codes.
    return text
      .split("\n")
      .map((line) => (line === "" ? line : styleText(tone, line, { validateStream: false })))
      .join("\n");
  }

  /** Writes one renderer chunk. */
  chunk(c: Chunk): void {
    this.hideSpinner();
    const stream = c.stream === "stdout" ? this.io.stdout : this.io.stderr;
    stream.write(this.paint(stream, c.text, c.tone));
  }

  /** A line of human output on stdout (ignored in JSON mode). */
  line(text = ""): void {
    if (this.json) return;
    this.hideSpinner();
    this.io.stdout.write(`${text}\n`);
  }

  /** A line on stderr (notes, hints, progress), dimmed unless another tone (or `null`: none) is given. */
  note(text: string, tone: Tone | null = "dim"): void {
    this.hideSpinner();
    this.io.stderr.write(`${this.paint(this.io.stderr, text, tone ?? undefined)}\n`);
  }

  /** One JSON document on stdout. */
  printJson(value: unknown): void {
    this.hideSpinner();
    this.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** One NDJSON line on stdout. */
  jsonLine(value: unknown): void {
    this.hideSpinner();
    this.io.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** `data` as JSON, or through `human` for people. */
  result<T>(data: T, human: (data: T) => void): void {
    if (this.json) this.printJson(data);
    else human(data);
  }

  /** An aligned table on stdout (human mode), `(none)` when there are no rows. */
  table(headers: string[], rows: string[][], empty = "(none)"): void {
    if (this.json) return;
    if (rows.length === 0) {
      this.line(empty);
      return;
    }
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const format = (cells: string[]): string =>
      cells
        .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd();
    this.line(this.paint(this.io.stdout, format(headers), "bold"));
    for (const row of rows) this.line(format(row));
  }

  /** Reports `err` on stderr: `pifleet: <message>` and its hint. */
  error(err: CliError): void {
    this.hideSpinner();
    if (err.silent) return;
    const { stderr } = this.io;
    stderr.write(`${this.paint(stderr, `pifleet: ${err.message}`, "red")}\n`);
    if (err.hint) stderr.write(`${this.paint(stderr, `hint: ${err.hint}`, "dim")}\n`);
  }

  /** Whether spinners are shown: stderr is a terminal and not `--json`. */
  get spinnerEnabled(): boolean {
    const { stderr, env } = this.io;
    // A terminal without a size (a pty nobody sized) would make ora redraw endlessly.
    return !this.json && stderr.isTTY === true && (stderr.columns ?? 0) > 0 && env.TERM !== "dumb";
  }

  /** Shows (or retitles) the spinner on stderr; a no-op when spinners are off. */
  showSpinner(text: string): void {
    if (!this.spinnerEnabled) return;
    if (this.spinner) {
      this.spinner.text = text;
      return;
    }
    this.spinner = ora({ text, stream: this.io.stderr, discardStdin: false }).start();
  }

  /** Removes the spinner, if shown. */
  hideSpinner(): void {
    if (!this.spinner) return;
    this.spinner.stop();
    this.spinner = undefined;
  }

  /** Runs `fn` with a spinner saying `text` if it takes longer than a moment. */
  async withSpinner<T>(text: string, fn: () => Promise<T>): Promise<T> {
    const timer = setTimeout(() => this.showSpinner(text), SPINNER_DELAY_MS);
    try {
      return await fn();
    } finally {
      clearTimeout(timer);
      this.hideSpinner();
    }
  }
}
