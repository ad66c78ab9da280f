export { startWorker, type WorkerNode } from "./worker-node.ts";
