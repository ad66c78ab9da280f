// The gateway's control client against a real Redis and a stand-in worker (a subscriber on the
// worker's inbox that never answers): a request whose worker stops holding the project ends as
// `lost` after two looks at the lease; waiting for an owner is capped whatever the request's own
// budget (a command may be waited for minutes, a project nobody takes must not hold its client that
// long); shutting down ends every wait at once and refuses new requests.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { connectRedis, createKeys, type Redis } from "@pi-fleet/redis";
import { uniquePrefix } from "@pi-fleet/testkit";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ControlClient } from "../../apps/gateway/src/control-client.ts";

const keys = createKeys(uniquePrefix("control-client"));
const ORG = "acme";
let redis: Redis;
/** The stand-in worker's inbox subscription. */
let inbox: Redis;
const received: string[] = [];
const clients: { client: ControlClient }[] = [];

beforeAll(async () => {
  const url = inject("redisUrl");
  redis = await connectRedis(url, "command", "test-control-client");
  inbox = await connectRedis(url, "subscriber", "test-control-client-inbox");
  inbox.on("message", (_channel: string, message: string) => received.push(message));
  await inbox.subscribe(keys.workerInbox("w-mute"));
});

afterAll(async () => {
  for (const { client } of clients) await client.close();
  await inbox?.quit();
  await redis?.quit();
});

/** A control client with fast timing; `owners` counts its dispatch signals. */
async function newClient(timing: { holderCheckMs?: number; ownerWaitMaxMs?: number }) {
  const sub = await connectRedis(inject("redisUrl"), "subscriber", "test-control-client-sub");
  const owners: string[] = [];
  const client = new ControlClient(
    redis,
    sub,
    keys,
    `gw-${clients.length}`,
    async (_org, project) => {
      owners.push(project);
    },
    timing,
  );
  await client.start();
  clients.push({ client });
  return { client, owners };
}

describe("ControlClient", () => {
  it("ends a request as lost once two looks at the lease find another holder", async () => {
    const { client } = await newClient({ holderCheckMs: 100 });
    await redis.set(keys.lease(ORG, "p-lost"), "w-mute:1");
    const started = performance.now();
    const pending = client.send(ORG, "p-lost", "command", { session: "s" }, 60_000);
    await expect.poll(() => received.length, { timeout: 2000 }).toBeGreaterThan(0);
    // Still its holder: the request keeps waiting.
    await new Promise((resolve) => setTimeout(resolve, 350));
    await redis.set(keys.lease(ORG, "p-lost"), "w-other:2");
    const tookOver = performance.now();
    expect(await pending).toEqual({ kind: "lost" });
    expect(tookOver - started).toBeGreaterThanOrEqual(350);
    expect(performance.now() - tookOver).toBeLessThan(1000);
  });

  it("waits for an owner at most ownerWaitMaxMs, whatever the request's budget", async () => {
    const { client, owners } = await newClient({ ownerWaitMaxMs: 300 });
    const started = performance.now();
    const outcome = await client.send(ORG, "p-nobody", "command", { session: "s" }, 60_000, true);
    expect(outcome).toEqual({ kind: "no-owner" });
    expect(owners).toEqual(["p-nobody"]);
    expect(performance.now() - started).toBeLessThan(3000);
  });

  it("ends every wait as shutdown when it stops waiting; later requests go out unawaited", async () => {
    const { client } = await newClient({});
    await redis.set(keys.lease(ORG, "p-shutdown"), "w-mute:1");
    const before = received.length;
    const pending = client.send(ORG, "p-shutdown", "command", { session: "s" }, 60_000);
    await expect.poll(() => received.length, { timeout: 2000 }).toBeGreaterThan(before);
    const stoppedAt = performance.now();
    client.stopWaiting();
    expect(await pending).toEqual({ kind: "shutdown", sent: true });
    expect(performance.now() - stoppedAt).toBeLessThan(500);
    // A deletion's message still reaches the worker; nobody waits for its answer.
    const sent = received.length;
    expect(await client.send(ORG, "p-shutdown", "forget_session", { session: "s" })).toEqual({
      kind: "shutdown",
      sent: true,
    });
    await expect.poll(() => received.length, { timeout: 2000 }).toBe(sent + 1);
    expect(await client.send(ORG, "p-none", "command", { session: "s" }, 60_000, true)).toEqual({
      kind: "shutdown",
      sent: false,
    });
  });

  it("keeps no reply once its request is answered", async () => {
    // A stand-in worker that answers every request with a large result.
    const answering = await connectRedis(inject("redisUrl"), "subscriber", "test-control-client-answers");
    answering.on("message", (_channel: string, message: string) => {
      const request = JSON.parse(message) as { id: string; replyTo: string };
      const reply = { id: request.id, ok: true, result: { blob: "x".repeat(100_000) } };
      void redis.publish(request.replyTo, JSON.stringify(reply));
    });
    await answering.subscribe(keys.workerInbox("w-answers"));
    try {
      const { client } = await newClient({});
      await redis.set(keys.lease(ORG, "p-answers"), "w-answers:1");
      const ask = async (): Promise<WeakRef<object>> => {
        const outcome = await client.send(ORG, "p-answers", "command", { session: "s" }, 5000);
        if (outcome.kind !== "reply") throw new Error(`expected a reply, got ${outcome.kind}`);
        return new WeakRef(outcome.reply);
      };
      const refs: WeakRef<object>[] = [];
      for (let i = 0; i < 20; i++) refs.push(await ask());
      setFlagsFromString("--expose-gc");
      const gc = runInNewContext("gc") as () => void;
      // The last reply may still sit in a frame or a microtask of its own: allow it, not more.
      for (let i = 0; i < 3; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        gc();
      }
      expect(refs.slice(0, -1).filter((r) => r.deref() !== undefined).length).toBe(0);
    } finally {
      await answering.quit();
    }
  });
});
