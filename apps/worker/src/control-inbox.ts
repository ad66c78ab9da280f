/**
 * Worker side of the control channel: one subscription to this worker's inbox; requests are
 * routed to the runner of the project they name and answered on the sender's reply channel.
 * A request for a project this worker does not own is answered `{ok: false}` (the gateway read
 * a stale lease holder).
 */
import type { PromptImage } from "@pi-fleet/pi-runtime";
import { CONTROL_NOT_OWNER, type Redis } from "@pi-fleet/redis";
import type { Ownership } from "./ownership.ts";
import { ProjectReleasingError } from "./session-host.ts";
import { isUiAnswer, UI_ALREADY_ANSWERED } from "./ui-bridge.ts";
import type { WorkerContext } from "./worker-context.ts";

interface Request {
  id: string;
  type: string;
  org: string;
  project: string;
  session?: string;
  replyTo: string;
  payload?: unknown;
}

/** Serves control requests for the projects this worker owns. */
export class ControlInbox {
  private readonly ctx: WorkerContext;
  private readonly sub: Redis;
  private readonly ownership: Ownership;

  /** @param sub a dedicated subscriber connection (owned by the inbox) */
  constructor(ctx: WorkerContext, sub: Redis, ownership: Ownership) {
    this.ctx = ctx;
    this.sub = sub;
    this.ownership = ownership;
    this.sub.on("message", (_channel: string, message: string) => void this.handle(message));
  }

  async start(): Promise<void> {
    await this.sub.subscribe(this.ctx.keys.workerInbox(this.ctx.workerId));
  }

  async close(): Promise<void> {
    await this.sub.quit().catch(() => this.sub.disconnect());
  }

  /**
   * Takes (GETDEL) the images a gateway stored apart for a `deliver` request (they are too large
   * for a pub/sub message, see apps/gateway/src/deliver.ts): `[{data, mimeType}]`, or null when
   * the key is not a control-input key of this deployment, expired, or holds something else.
   */
  private async takeImages(key: unknown): Promise<PromptImage[] | null> {
    if (typeof key !== "string" || !this.ctx.keys.isControlInput(key)) return null;
    const raw = await this.ctx.redis.getdel(key);
    if (raw === null) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return null;
    }
    const valid =
      Array.isArray(parsed) &&
      parsed.every(
        (i: { data?: unknown; mimeType?: unknown } | null) =>
          typeof i?.data === "string" && typeof i.mimeType === "string",
      );
    return valid ? (parsed as PromptImage[]) : null;
  }

  private async handle(message: string): Promise<void> {
    let req: Request;
    try {
      req = JSON.parse(message) as Request;
    } catch {
      return;
    }
    if (typeof req.replyTo !== "string" || !this.ctx.keys.isGatewayReplies(req.replyTo)) return;
    const reply = (ok: boolean, result?: unknown, error?: string) =>
      this.ctx.redis.publish(req.replyTo, JSON.stringify({ id: req.id, ok, result, error })).catch(() => 0);
    const runner = this.ownership.runner(req.org, req.project);
    if (!runner) {
      await reply(false, undefined, CONTROL_NOT_OWNER);
      return;
    }
    try {
      switch (req.type) {
        case "abort": {
          const runId = req.session ? await runner.abortSession(req.session) : undefined;
          await reply(true, { aborted: runId !== undefined, ...(runId ? { runId } : {}) });
          return;
        }
        case "deliver": {
          const { text, mode, imagesKey } = (req.payload ?? {}) as {
            text?: string;
            mode?: "steer" | "followUp";
            imagesKey?: unknown;
          };
          if (!req.session || typeof text !== "string" || (mode !== "steer" && mode !== "followUp")) {
            await reply(false, undefined, "invalid deliver request");
            return;
          }
          const images = imagesKey === undefined ? undefined : await this.takeImages(imagesKey);
          if (images === null) {
            await reply(false, undefined, "invalid deliver request: images unavailable");
            return;
          }
          const runId = await runner.deliver(req.session, text, mode, images);
          await reply(true, runId ? { delivered: mode, runId } : { delivered: "idle" });
          return;
        }
        case "command": {
          const command = req.payload as { type?: unknown } | undefined;
          if (!req.session || !command || typeof command.type !== "string") {
            await reply(false, undefined, "invalid command request");
            return;
          }
          await reply(true, await runner.command(req.session, command as { type: string }));
          return;
        }
        case "ui_response": {
          const { requestId, response } = (req.payload ?? {}) as { requestId?: unknown; response?: unknown };
          if (!req.session || typeof requestId !== "string" || !isUiAnswer(response)) {
            await reply(false, undefined, "invalid ui_response request");
            return;
          }
          const outcome = await runner.answerUi(req.session, requestId, response);
          if (outcome === "answered") await reply(true, { answered: true });
          else
            await reply(
              false,
              undefined,
              outcome === "already_answered" ? UI_ALREADY_ANSWERED : "unknown request",
            );
          return;
        }
        case "forget_session":
          if (req.session) await runner.forgetSession(req.session);
          await reply(true, {});
          return;
        case "release_project":
          this.ownership.release(req.org, req.project);
          await runner.done;
          await reply(true, {});
          return;
        default:
          await reply(false, undefined, `unknown control request ${req.type}`);
      }
    } catch (err) {
      // Letting the project go: the gateway asks the next owner.
      if (err instanceof ProjectReleasingError) await reply(false, undefined, CONTROL_NOT_OWNER);
      else await reply(false, undefined, err instanceof Error ? err.message : String(err));
    }
  }
}
