/**
 * Which methods a path has, for the 405 answer to a wrong method on a real path (`PUT
 * /v1/projects`): Fastify has no 405 of its own and sends such a request to the not-found handler.
 * A second `find-my-way` router (the router Fastify itself uses, with the app's router options) is
 * filled from an `onRoute` hook with every route's method and URL pattern; the not-found handler
 * asks it which methods match the request's path. It matches route shapes only, never data, so a
 * 405 says nothing about which projects or sessions exist.
 *
 * Left out, so they keep answering 404: routes hidden from the OpenAPI document (`schema.hide`:
 * metrics, the docs UI, the queue board), a match with an empty path parameter (`/v1/projects/`),
 * OPTIONS (the CORS preflight route is a catch-all `*`: it
 * would make every path "exist"; an OPTIONS request is never answered 405 either), and the
 * operator routes in open mode, where `/v1/admin/*` does not exist (authenticate.ts).
 */
import type { FastifyInstance } from "fastify";
import FindMyWay from "find-my-way";

type Method = FindMyWay.HTTPMethod;

/** The router options of Fastify's config that shape which paths match. */
interface RouterConfig {
  ignoreTrailingSlash?: boolean;
  ignoreDuplicateSlashes?: boolean;
  caseSensitive?: boolean;
  maxParamLength?: number;
  allowUnsafeRegex?: boolean;
}

/** The order methods are listed in `Allow`. */
const ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/** Answers which methods a concrete request path has (empty: no route has this path). */
export type AllowedMethods = (url: string) => string[];

/**
 * Installs the `onRoute` hook that mirrors every route registered from now on (call it before any
 * route is registered) and returns the lookup for the not-found handler.
 */
export function trackRouteMethods(app: FastifyInstance): AllowedMethods {
  // Fastify 5 takes router options at the top level (deprecated) or under `routerOptions`.
  const top = app.initialConfig as RouterConfig;
  const nested = (top as { routerOptions?: RouterConfig }).routerOptions ?? {};
  const option = <K extends keyof RouterConfig>(key: K): RouterConfig[K] => nested[key] ?? top[key];
  const router = FindMyWay({
    ignoreTrailingSlash: option("ignoreTrailingSlash") ?? false,
    ignoreDuplicateSlashes: option("ignoreDuplicateSlashes") ?? false,
    caseSensitive: option("caseSensitive") ?? true,
    maxParamLength: option("maxParamLength") ?? 100,
    allowUnsafeRegex: option("allowUnsafeRegex") ?? false,
  });
  const methods = new Set<Method>();
  const openMode = app.services.env.PI_FLEET_ADMIN_TOKEN === undefined;
  const noop = () => undefined;

  const add = (method: Method, url: string) => {
    try {
      router.on(method, url, noop);
      methods.add(method);
    } catch {
      // Already mirrored (Fastify's own HEAD route next to an explicit one): nothing to add.
    }
  };

  app.addHook("onRoute", (route) => {
    if (openMode && route.config?.auth === "operator") return;
    // Routes left out of the OpenAPI document (metrics, docs UI, queue board) keep their 404s.
    if ((route.schema as { hide?: boolean } | undefined)?.hide === true) return;
    const url = route.url ?? route.path;
    if (typeof url !== "string") return;
    for (const method of [route.method].flat() as Method[]) {
      if (method === "OPTIONS") continue;
      add(method, url);
      // A prefixed plugin's "/" route is also served at "<prefix>/" (Fastify's default
      // `prefixTrailingSlash: "both"`); only the first one is reported to onRoute.
      if (route.routePath === "" && route.prefix && (route.prefixTrailingSlash ?? "both") === "both") {
        add(method, `${url}/`);
      }
    }
  });

  return (url) => {
    const found: string[] = [];
    for (const method of methods) {
      const match = router.find(method, url);
      // `/v1/projects/` matches `/:id` with an empty id, which every route refuses: not the path.
      if (match !== null && !Object.values(match.params).some((v) => v === "")) found.push(method);
    }
    return found.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  };
}

function rank(method: string): number {
  const i = ORDER.indexOf(method);
  return i === -1 ? ORDER.length : i;
}
