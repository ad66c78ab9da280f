/**
 * Reading from the user: whole stdin (`--key -`, text `-`), one line, a hidden line (API keys)
 * and yes/no questions. Questions are written to stderr so stdout stays clean; Ctrl-C while
 * asking exits with 130.
 */
import { createInterface } from "node:readline";
import { CliError, ExitCode } from "./errors.ts";
import type { Io } from "./io.ts";

/** Thrown when the user presses Ctrl-C at a question. */
export function interrupted(): CliError {
  return new CliError("interrupted", ExitCode.interrupted);
}

/** Whether the CLI may ask questions: stdin and stderr are terminals. */
export function canAsk(io: Io): boolean {
  return io.stdin.isTTY === true && io.stderr.isTTY === true;
}

/** All of stdin as text (UTF-8). */
export async function readStdin(io: Io): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Asks `question` and resolves the line typed (without the newline); `fallback` when it is
 * empty. Resolves undefined at end of input (Ctrl-D); rejects with exit 130 on Ctrl-C.
 */
export function ask(io: Io, question: string, fallback?: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: io.stdin, output: io.stderr, terminal: io.stdin.isTTY === true });
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      fn();
      rl.close();
    };
    rl.on("SIGINT", () => settle(() => reject(interrupted())));
    rl.on("close", () => settle(() => resolve(undefined)));
    rl.question(question, (answer) =>
      settle(() => resolve(answer === "" && fallback !== undefined ? fallback : answer)),
    );
  });
}

/**
 * Asks `question` without echoing what is typed (raw mode); resolves the line. Needs a terminal
 * on stdin. Ctrl-C rejects with exit 130, Ctrl-D ends the input.
 */
export function askHidden(io: Io, question: string): Promise<string> {
  const { stdin, stderr } = io;
  if (!stdin.isTTY || !stdin.setRawMode) return ask(io, question).then((a) => a ?? "");
  const setRaw = stdin.setRawMode.bind(stdin);
  return new Promise((resolve, reject) => {
    stderr.write(question);
    let value = "";
    const done = (fn: () => void): void => {
      stdin.off("data", onData);
      setRaw(false);
      stdin.pause();
      stderr.write("\n");
      fn();
    };
    const onData = (data: Buffer | string): void => {
      for (const ch of typeof data === "string" ? data : data.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          done(() => resolve(value));
          return;
        }
        if (ch === "\u0003") {
          done(() => reject(interrupted()));
          return;
        }
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
        else if (ch >= " ") value += ch;
      }
    };
    setRaw(true);
    stdin.resume();
    stdin.on("data", onData);
  });
}

/** Asks a yes/no question; `fallback` on an empty answer or end of input. */
export async function askYesNo(io: Io, question: string, fallback = false): Promise<boolean> {
  for (;;) {
    const answer = await ask(io, `${question} ${fallback ? "[Y/n]" : "[y/N]"} `);
    if (answer === undefined) return fallback;
    const a = answer.trim().toLowerCase();
    if (a === "") return fallback;
    if (a === "y" || a === "yes") return true;
    if (a === "n" || a === "no") return false;
  }
}
