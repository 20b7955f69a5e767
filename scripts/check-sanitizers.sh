#!/usr/bin/env bash
# The sanitizer runs: builds meshd and its tests with ASan+UBSan (MESHD_SANITIZE) in its own folder
# and runs the whole C++ test suite there, in parallel; any sanitizer report fails its test.
# Usage: scripts/check-sanitizers.sh [asan|tsan] [ctest args...]   (default asan)
#   tsan: ThreadSanitizer (MESHD_TSAN) over the service and integration tests only (their targets
#         alone are built). Not in CI: Debian's Abseil is not built with TSan, so every
#         absl::Mutex looks unsynchronized to it and it reports races that are not (see
#         docs/testing.md).
# Environment: ASAN_BUILD_DIR (default build-asan), TSAN_BUILD_DIR (default build-tsan), JOBS.
# -O1 with assertions (CMAKE_BUILD_TYPE=Debug, -O1 -g1): half the compile time of -O3, and the
# stacks a report prints are readable. The Python package is left out (its tests load
# libmeshd_client into the system Python, which is not built with the sanitizers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-asan}
shift || true
jobs=${JOBS:-$(nproc)}
common=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" "-DCMAKE_C_FLAGS_DEBUG=-O1 -g1"
        -DMESHD_BUILD_BENCH=OFF -DMESHD_BUILD_PYTHON=OFF -DMESHD_STATIC_DEPS=OFF)

configure() {
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S . -B "$dir" -G Ninja "${common[@]}" "$@" >/dev/null
  fi
}

"$root/scripts/install-deps.sh" "$root/scripts/packages-build.txt"
case "$mode" in
  asan)
    dir=${ASAN_BUILD_DIR:-build-asan}
    configure "$dir" -DMESHD_SANITIZE=ON
    cmake --build "$dir" -j "$jobs"
    # A leak, an overflow or undefined behaviour aborts the process, so its test fails.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    ctest --test-dir "$dir" -j "$jobs" --output-on-failure -LE 'gpu|deploy' "$@"
    ;;
  tsan)
    dir=${TSAN_BUILD_DIR:-build-tsan}
    configure "$dir" -DMESHD_TSAN=ON
    # Only what the service and integration tests need (the daemons they start come with them).
    cmake --build "$dir" -j "$jobs" --target coordinator_service_test metrics_test reflection_test \
      agent_service_test unix_socket_test cluster_test coordinator_restart_test \
      mesh_integration_test
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
    ctest --test-dir "$dir" -j "$jobs" --output-on-failure -L 'service|integration' "$@"
    ;;
  *)
    echo "usage: $0 [asan|tsan] [ctest args...]" >&2
    exit 2
    ;;
esac
