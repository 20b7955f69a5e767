#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang with ASan+UBSan) in their own folder and runs each
# for a bounded time, two at a time, from its checked-in seed corpus (tests/fuzz/corpus/<target>).
# A crash, sanitizer report or broken invariant fails the run and leaves the input that caused it
# as $FUZZ_DIR/<target>-crash-*; reproduce with  build-fuzz/bin/<target>_fuzz <that file>.
# Usage: scripts/fuzz.sh [SECONDS_EACH] [TARGET...]   (default 30 s each, every target, as CI)
# Run longer to search harder, e.g. scripts/fuzz.sh 3600 coordinator. What a run finds beyond the
# seeds stays in $FUZZ_DIR/corpus/<target> (seeds worth keeping go in tests/fuzz/corpus).
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_DIR (default $FUZZ_BUILD_DIR/fuzz-runs),
#   JOBS (fuzzers at once, default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(resolve_groups mesh_spec plan_script config coordinator agent_attach store_relay)
build_dir=${FUZZ_BUILD_DIR:-build-fuzz}
runs=${FUZZ_DIR:-$build_dir/fuzz-runs}

"$root/scripts/install-deps.sh" "$root/scripts/packages-build.txt"
if [ ! -f "$build_dir/build.ninja" ]; then
  # -O1 with assertions: fast to build, and a failed ABSL_DCHECK is a finding too.
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DCMAKE_C_FLAGS_DEBUG="-O1 -g1" -DMESHD_FUZZ=ON \
    -DMESHD_BUILD_TESTS=OFF -DMESHD_BUILD_BENCH=OFF -DMESHD_BUILD_PYTHON=OFF \
    -DMESHD_STATIC_DEPS=OFF -DMESHD_JEMALLOC=OFF >/dev/null
fi
cmake --build "$build_dir" -j "${BUILD_JOBS:-$(nproc)}" --target meshd_fuzzers

mkdir -p "$runs"
run_one() {
  local t=$1
  mkdir -p "$runs/corpus/$t"
  if "$build_dir/bin/${t}_fuzz" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$runs/$t-" "$runs/corpus/$t" "tests/fuzz/corpus/$t" \
      >"$runs/$t.log" 2>&1; then
    echo "fuzz: $t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$runs/$t.log" | cut -d' ' -f2) runs in ${seconds}s, clean"
  else
    echo "fuzz: $t FAILED (log $runs/$t.log):" >&2
    grep -E 'invariant|differ|ERROR|SUMMARY|Test unit written' "$runs/$t.log" | head -5 >&2
    return 1
  fi
}
failed=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "${JOBS:-2}" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit $failed
