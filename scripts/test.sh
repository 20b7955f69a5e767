#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test in parallel.
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit, or -R Slice.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
ctest --test-dir "$root/${BUILD_DIR:-build}" -j "${JOBS:-$(nproc)}" --output-on-failure "$@"
