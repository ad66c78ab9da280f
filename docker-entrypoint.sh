#!/bin/sh
# Chooses the process: `all` (single-node), `gateway` or `worker`.
set -eu
case "${1:-all}" in
  all) exec node /app/apps/all/dist/main.js ;;
  gateway) exec node /app/apps/gateway/dist/main.js ;;
  worker) exec node /app/apps/worker/dist/main.js ;;
  *) exec "$@" ;;
esac
