/**
 * Which methods a path has, for the 405 answer to a wrong method on a real path (`PUT
 * /v1/projects`): Fastify has no 405 of its own and sends such a request to the not-found handler.
 * A second `find-my-way` router (the router Fastify itself uses, with the app's router options) is
 * filled from an `onRoute` hook with every route's method and URL pattern; the not-found handler
 * asks it which methods match the request's path. It matches route shapes only, never data, so a
 * 405 says nothing about which projects or sessions exist.
 *
 * Left out, so they keep answering 404: OPTIONS (the CORS preflight route is a catch-all `*`: it
 * would make every path "exist"; an OPTIONS request is never answered 405 either), and the
 * operator routes in open mode, where `/v1/admin/*` does not exist (authenticate.ts).
 */
import type { FastifyInstance } from "fastify";
import FindMyWay from "find-my-way";

type Method = FindMyWay.HTTPMethod;

/** The order methods are listed in `Allow`. */
const ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/** Answers which methods a concrete request path has (empty: no route has this path). */
export type AllowedMethods = (url: string) => string[];

/**
 * Installs the `onRoute` hook that mirrors every route registered from now on (call it before any
 * route is registered) and returns the lookup for the not-found handler.
 */
export function trackRouteMethods(app: FastifyInstance): AllowedMethods {
  const config = app.initialConfig;
  const router = FindMyWay({
    ignoreTrailingSlash: config.ignoreTrailingSlash ?? false,
    ignoreDuplicateSlashes: config.ignoreDuplicateSlashes ?? false,
    caseSensitive: config.caseSensitive ?? true,
    maxParamLength: config.maxParamLength ?? 100,
    allowUnsafeRegex: config.allowUnsafeRegex ?? false,
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
      if (router.find(method, url) !== null) found.push(method);
    }
    return found.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  };
}

function rank(method: string): number {
  const i = ORDER.indexOf(method);
  return i === -1 ? ORDER.length : i;
}
