# pi-fleet image: one image, three entrypoints (`all`, `gateway`, `worker`).
# Build stage compiles the workspace with tsc -b; the runtime stage carries dist/ and production
# dependencies only, runs as a non-root user, and has no build tools.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY apps/ apps/
COPY libs/ libs/
COPY tsconfig.base.json tsconfig.json ./
COPY test/tsconfig.json test/tsconfig.json
RUN npm ci --no-audit --no-fund && npx tsc -b apps/all apps/gateway apps/worker \
  && npm prune --omit=dev \
  && find apps libs -name "*.tsbuildinfo" -delete

FROM node:24-bookworm-slim AS runtime
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap ca-certificates tini \
  && rm -rf /var/lib/apt/lists/* && useradd --uid 10001 --create-home pifleet
WORKDIR /app
COPY --from=build --chown=root:root /app /app
# The shared volume mounts at WORKSPACE_DIR; workers keep private pi state next to it
# (WORKSPACE_DIR/../.agents), so its parent must be writable too.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 WORKSPACE_DIR=/var/lib/pi-fleet/workspace PI_OFFLINE=1 PI_TELEMETRY=0
RUN mkdir -p /var/lib/pi-fleet/workspace && chown -R pifleet /var/lib/pi-fleet
USER pifleet
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD node -e "const w=process.env.PI_FLEET_WORKER_PORT;fetch(w?'http://127.0.0.1:'+w+'/healthz':'http://127.0.0.1:'+(process.env.PORT||8080)+'/v1/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker-entrypoint.sh"]
CMD ["all"]
COPY --chmod=0755 docker-entrypoint.sh /app/docker-entrypoint.sh
