#!/usr/bin/env bash
# Installs missing Debian packages, configures (once) and builds meshd. Idempotent and incremental.
# Environment:
#   BUILD_DIR          build folder (default: build)
#   BUILD_TYPE         CMake build type (default: Release)
#   MESHD_CMAKE_ARGS   extra CMake arguments, e.g. "-DMESHD_SANITIZE=ON"
#   JOBS               parallel build jobs (default: number of cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}

"$root/scripts/install-deps.sh" "$root/scripts/packages-build.txt"

if [ ! -f "$build_dir/build.ninja" ]; then
  # shellcheck disable=SC2086  # MESHD_CMAKE_ARGS is a list of arguments
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" ${MESHD_CMAKE_ARGS:-}
fi
cmake --build "$build_dir" -j "$jobs"
