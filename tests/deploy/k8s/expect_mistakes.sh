#!/usr/bin/env bash
# The validator must fail on testdata/ and name every planted mistake.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if out=$("$here/validate.sh" "$here/testdata" 2>&1); then
  echo "validate.sh passed manifests with planted mistakes:"; echo "$out"; exit 1
fi
echo "$out"
status=0
for want in "nodeSelecter: unknown field" "readinessProbe/grpc/port must be integer" \
            "livenessProbe must be a native gRPC probe" "MESHD_NODE_NAME must come from spec.nodeName" \
            "agent must mount /run/meshd"; do
  grep -qF "$want" <<<"$out" || { echo "MISSING: $want"; status=1; }
done
exit $status
