// A writable stream that keeps what is written to it as text: stdout / stderr of an in-process CLI.
import { PassThrough } from "node:stream";

/** A stream and the UTF-8 text written to it so far. */
export function textSink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (c: Buffer) => {
    text += c.toString("utf8");
  });
  return { stream, text: () => text };
}
