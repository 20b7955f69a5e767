#!/usr/bin/env bash
# The published comparison in one command: installs what is missing (the build packages and
# Debian's python3-torch), builds meshd_bench, then runs meshd_bench and PyTorch's TCPStore on the
# same workload at each size, in alternation, and prints the table and the ratios.
# Usage: bench/compare.sh [--nodes 64,1024,16384] [--repeat N] [...]   (see tcpstore_compare.py -h)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh" "$root/scripts/packages-build.txt"
"$root/scripts/install-deps.sh" "$root/scripts/packages-compare.txt"
BUILD_DIR=${BUILD_DIR:-$root/build} "$root/scripts/build.sh" >/dev/null
exec /usr/bin/python3 "$root/bench/tcpstore_compare.py" \
  --meshd-bench "${BUILD_DIR:-$root/build}/bin/meshd_bench" "$@"
