#!/usr/bin/env bash
# The sanitizer runs, each in its own build folder, tests in parallel; docs/testing.md says what each
# covers and costs.
# Usage: scripts/check-sanitizers.sh [asan|tsan] [ctest args...]   (default asan)
#   asan: ASan+UBSan (MESHD_SANITIZE), the whole C++ suite; any report aborts its test.
#   tsan: ThreadSanitizer (MESHD_TSAN, clang) over the service and integration tests (their
#         targets alone are built, with tests/tsan/canary). gRPC and protobuf are Debian's builds and
#         stay uninstrumented; Abseil must not, or TSan cannot see an absl::Mutex synchronize: Debian's
#         own Abseil source (same version, patches and sonames; `apt-get source` through a private
#         deb-src list, no root) is built with TSan in $TSAN_BUILD_DIR/abseil (ccache; only the
#         libraries the tests load) and put first in LD_LIBRARY_PATH. TSan options (see below):
#         suppressions= tests/tsan/suppressions.txt (interceptors called from gRPC, spdlog and
#         Abseil's LowLevelAlloc are not memory accesses), log_path= a file per process, and neither
#         halt_on_error nor TSan's exit code: tests/tsan/triage.py reads every report afterwards
#         and fails the run on any that concerns meshd's code (it lets pass only races both of whose
#         accesses are made on gRPC's behalf, which TSan cannot judge). tests/tsan/canary checks
#         first that the instrumented Abseil is loaded and that a race in meshd's code still fails.
#         TSan cannot see the ordering gRPC gives between its threads: meshd tells it where it hands
#         objects to gRPC and takes them back (common/sync/handoff.h; docs/testing.md). In CI.
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

# Sets absl_lib to the folder of Debian's Abseil built with TSan for the binaries of build folder $1:
# the installed libabsl-dev's own source package (same version, Debian's patches, same sonames),
# fetched once with `apt-get source` through a private deb-src list and lists folder (the system's apt
# configuration is left alone and no root is needed), built with clang and ccache, and of it only
# the libraries those binaries load. Reruns are no-ops.
tsan_abseil() {
  local top ver src apt binaries needed launcher=()
  top=$(cd "$1" && pwd)/abseil
  ver=$(dpkg-query -W -f='${source:Version}' libabsl-dev)
  src=$top/src-$ver
  if [ ! -f "$src/CMakeLists.txt" ]; then
    apt=$top/apt
    rm -rf "$apt" "$src"
    mkdir -p "$apt/lists/partial" "$apt/get"
    # deb-src for each Debian repository this machine installs from (its mirror, its suites).
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' \
        'Origin: Debian' | sort -u | while read -r uri suite component; do
      echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite $component"
    done >"$apt/sources.list"
    [ -s "$apt/sources.list" ] ||
      echo "deb-src http://deb.debian.org/debian bookworm main" >"$apt/sources.list"
    local opts=(-qq -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=-"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::pkgcache="
                -o "Dir::Cache::srcpkgcache=")
    apt-get "${opts[@]}" update
    (cd "$apt/get" && apt-get "${opts[@]}" --download-only source "abseil=$ver") || {
      echo "tsan: abseil $ver (the installed libabsl-dev's source) is not on the mirror" >&2
      return 1
    }
    dpkg-source --no-check -x "$apt/get/abseil_${ver#*:}.dsc" "$src" >/dev/null
  fi
  if [ ! -f "$top/build/build.ninja" ]; then
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    # As Debian builds it (C++17, shared, its options.h), plus TSan at -O1 like meshd's build.
    CC=clang CXX=clang++ cmake -S "$src" -B "$top/build" -G Ninja -DCMAKE_BUILD_TYPE=None \
      "-DCMAKE_CXX_FLAGS=-O1 -g1 -fsanitize=thread" -DCMAKE_CXX_STANDARD=17 \
      -DBUILD_SHARED_LIBS=ON -DBUILD_TESTING=OFF -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$top/lib" \
      "${launcher[@]}" >/dev/null
  fi
  mapfile -t binaries < <(find "$1/bin" "$1/tests" -maxdepth 1 -type f -perm -u+x)
  mapfile -t needed < <(ldd "${binaries[@]}" | grep -o 'libabsl_[a-z0-9_]*\.so' | sort -u |
                        sed -e 's/^libabsl_//' -e 's/\.so$//')
  cmake --build "$top/build" -j "$jobs" --target "${needed[@]}"
  # Every Abseil library those binaries load must now come from here.
  local wrong
  wrong=$(LD_LIBRARY_PATH=$top/lib ldd "${binaries[@]}" | grep 'libabsl_' |
          grep -v "=> $top/lib/" || true)
  if [ -n "$wrong" ]; then
    echo "$wrong" >&2
    echo "tsan: the Abseil libraries above would not be the instrumented ones" >&2
    return 1
  fi
  absl_lib=$top/lib
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
    if [ -f "$dir/CMakeCache.txt" ] && ! grep -q '^CMAKE_CXX_COMPILER:FILEPATH=.*clang++$' \
        "$dir/CMakeCache.txt"; then
      echo "tsan: $dir was configured with another compiler: configuring it again" >&2
      rm -rf "$dir"
    fi
    # Clang: its -fsanitize-ignorelist leaves gRPC's header code out (tests/tsan/ignorelist.txt).
    # Warnings are the GCC builds' concern (-Werror there); clang's differ.
    CC=clang CXX=clang++ configure "$dir" -DMESHD_TSAN=ON -DMESHD_WERROR=OFF
    start=$SECONDS
    cmake --build "$dir" -j "$jobs" --target meshd_tests_service meshd_tests_integration tsan_canary
    echo "tsan: meshd's service and integration tests built in $((SECONDS - start)) s"
    start=$SECONDS
    tsan_abseil "$dir"
    echo "tsan: Debian's Abseil fetched and built with TSan in $((SECONDS - start)) s"
    export LD_LIBRARY_PATH=$absl_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # Absolute: ctest runs each test in its own folder, and log_path is taken from there.
    reports=$(cd "$dir" && pwd)/tsan-reports
    shopt -s nullglob
    rm -rf "$reports"
    mkdir -p "$reports"
    # Writable by every user: a test runs a client as another uid (unix_socket_test), whose TSan
    # runtime must open its log there too (if it cannot, it exits with exitcode=0 below).
    chmod 1777 "$reports"
    # No halt_on_error, exit code 0: a report stops nothing, triage.py judges them all.
    opts="suppressions=$root/tests/tsan/suppressions.txt:second_deadlock_stack=1:halt_on_error=0"
    opts+=":exitcode=0${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
    triage=(python3 "$root/tests/tsan/triage.py" "$root")
    TSAN_OPTIONS="$opts:log_path=$reports/canary-guarded" "$dir/tests/tsan_canary" guarded
    if ! "${triage[@]}" "$reports"/canary-guarded* >"$reports/guarded.txt"; then
      cat "$reports/guarded.txt" >&2
      echo "tsan: absl::Mutex is not seen to synchronize: is the instrumented Abseil loaded?" >&2
      exit 1
    fi
    TSAN_OPTIONS="$opts:log_path=$reports/canary-racy" "$dir/tests/tsan_canary" racy
    if "${triage[@]}" "$reports"/canary-racy* >"$reports/racy.txt" ||
        ! grep -q 'tests/tsan/canary.cc' "$reports/racy.txt"; then
      cat "$reports/racy.txt" >&2
      echo "tsan: a race in meshd's code (tests/tsan/canary.cc) was not failed" >&2
      exit 1
    fi
    echo "tsan: canary: absl::Mutex synchronizes, a race in meshd's code fails the run"
    rm -f "$reports"/*
    rc=0
    start=$SECONDS
    TSAN_OPTIONS="$opts:log_path=$reports/report" \
      ctest --test-dir "$dir" -j "$jobs" --output-on-failure -L 'service|integration' "$@" || rc=$?
    echo "tsan: tests run in $((SECONDS - start)) s"
    "${triage[@]}" "$reports"/report.* || rc=1
    exit $rc
    ;;
  *)
    echo "usage: $0 [asan|tsan] [ctest args...]" >&2
    exit 2
    ;;
esac
