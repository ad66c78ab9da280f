export { type EmbeddedRedis, findRedisServer, startEmbeddedRedis } from "./embedded-redis.ts";
