#!/usr/bin/env bash
# MESHD_STATIC_DEPS: the binaries carry gRPC, protobuf and Abseil (no shared copy of them is loaded,
# which would give two copies of their globals), still start, and the link launcher names a missing
# archive instead of linking something else.
# Usage: static_deps_test.sh <launcher> <binary>...
set -uo pipefail
launcher=$1
shift
status=0
dynamic='lib(grpc|gpr|upb|address_sorting|protobuf|absl_)'
for binary in "$@"; do
  needed=$(readelf -d "$binary" | grep NEEDED) || { echo "readelf failed on $binary"; status=1; }
  if grep -E "$dynamic" <<<"$needed"; then
    echo "FAIL: $binary still loads the shared libraries above"; status=1
  fi
  if ! grep -q 'libssl' <<<"$needed"; then
    echo "FAIL: $binary should keep OpenSSL shared (Debian's security updates)"; status=1
  fi
  if ! "$binary" --help >/dev/null; then
    echo "FAIL: $binary --help does not run"; status=1
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/libgrpc.so.29"
if out=$("$launcher" true "$tmp/libgrpc.so.29" 2>&1); then
  echo "FAIL: the launcher linked without libgrpc.a"; status=1
elif ! grep -qF "$tmp/libgrpc.a not found" <<<"$out"; then
  echo "FAIL: the launcher's error does not name the missing archive: $out"; status=1
fi
# A line with nothing to swap runs unchanged.
if ! out=$("$launcher" echo -o x a.o -lfoo 2>&1) || [[ $out != "-o x a.o -lfoo" ]]; then
  echo "FAIL: the launcher changed a line with no gRPC, protobuf or Abseil in it: '$out'"; status=1
fi
[[ $status -eq 0 ]] && echo "ok: $# binaries link gRPC, protobuf and Abseil statically"
exit $status
