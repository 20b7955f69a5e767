#!/usr/bin/env bash
# install_test.sh <build dir> <consumer source dir> <version> <cmake> <c++> <cc> [<python>]
# Installs a built tree (`cmake --install`, nothing rebuilt) into a temporary prefix, checks what is
# where, and builds the consumer in <consumer source dir> against it twice — with pkg-config
# (meshd-client.pc, plain compiler; C++ and C) and with find_package(meshd) — then runs each.
# With <python>, imports the installed Python package too. The install directories, relative to the
# prefix, come from the environment (tests/install/CMakeLists.txt sets them from the build's cache).
set -euo pipefail
build=$1 consumer=$2 version=$3 cmake=$4 cxx=$5 cc=$6 python=${7:-}
bindir=${MESHD_INSTALL_BINDIR:-bin} libdir=${MESHD_INSTALL_LIBDIR:-lib}
includedir=${MESHD_INSTALL_INCLUDEDIR:-include} docdir=${MESHD_INSTALL_DOCDIR:-share/doc/meshd}
unitdir=${MESHD_INSTALL_UNITDIR:-lib/systemd/system}
sysusersdir=${MESHD_INSTALL_SYSUSERSDIR:-lib/sysusers.d}
pythondir=${MESHD_INSTALL_PYTHONDIR:-lib/python3/dist-packages}
source=${MESHD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/meshd-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
no_socket=$tmp/no-agent.sock  # nothing listens there: attaching fails at once with UNAVAILABLE
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "cmake --install (is the tree built? cmake --build $build)"; }

step "the installed files"
for f in "$bindir/meshd" "$bindir/meshctl" "$libdir/libmeshd_client.so" \
         "$includedir/meshd/client.h" "$includedir/meshd/client_c.h" \
         "$libdir/pkgconfig/meshd-client.pc" "$libdir/cmake/meshd/meshdConfig.cmake" \
         "$libdir/cmake/meshd/meshdConfigVersion.cmake" "$libdir/cmake/meshd/meshdTargets.cmake" \
         "$unitdir/meshd-agent.service" "$unitdir/meshd-coordinator.service" \
         "$sysusersdir/meshd.conf" "$docdir/meshd.env.example"; do
  [ -f "$prefix/$f" ] || fail "$f is not installed"
done
headers=$(cd "$prefix/$includedir" && find . -type f | sort | tr '\n' ' ')
[ "$headers" = "./meshd/client.h ./meshd/client_c.h " ] || fail "installed headers: $headers"
for unit in meshd-agent meshd-coordinator; do
  grep -qx "ExecStart=$prefix/$bindir/meshd ${unit#meshd-}" "$prefix/$unitdir/$unit.service" ||
    fail "$unit.service does not start $prefix/$bindir/meshd: $(grep ExecStart "$prefix/$unitdir/$unit.service")"
done
# Nothing installed may name the build or source tree (text files; binaries keep __FILE__ names).
if leaks=$(grep -rlI -e "$(cd "$build" && pwd)" -e "$source" "$prefix"); then
  fail "installed files name the build or source tree: $leaks"
fi
"$prefix/$bindir/meshd" --help >/dev/null || fail "installed meshd does not run"
"$prefix/$bindir/meshctl" --help >/dev/null || fail "installed meshctl does not run"

check_attach() {  # <what> <program> [env...]: the program must print the UNAVAILABLE error
  local what=$1 program=$2 out
  shift 2
  out=$(env "$@" "$program" "$no_socket") || fail "$what: exit $?: $out"
  echo "$what: $out"
  case $out in
    *"no meshd agent socket at $no_socket"*) ;;
    *) fail "$what printed: $out" ;;
  esac
}

step "pkg-config consumer (C++ and C)"
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
[ "$(pkg-config --modversion meshd-client)" = "$version" ] ||
  fail "pkg-config --modversion meshd-client: $(pkg-config --modversion meshd-client)"
flags=$(pkg-config --cflags --libs meshd-client)
echo "pkg-config --cflags --libs meshd-client: $flags"
# shellcheck disable=SC2086  # $flags is a list of arguments
"$cxx" -std=c++17 -o "$tmp/consumer_pc" "$consumer/consumer.cc" $flags
# shellcheck disable=SC2086
"$cc" -o "$tmp/consumer_c_pc" "$consumer/consumer_c.c" $flags
check_attach "pkg-config C++ consumer" "$tmp/consumer_pc" LD_LIBRARY_PATH="$prefix/$libdir"
check_attach "pkg-config C consumer" "$tmp/consumer_c_pc" LD_LIBRARY_PATH="$prefix/$libdir"
unset PKG_CONFIG_PATH

step "find_package(meshd) consumer"
"$cmake" -S "$consumer" -B "$tmp/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DMESHD_EXPECTED_VERSION="$version" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
  >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "configuring the consumer"; }
grep -F "meshd $version from $prefix/$libdir/cmake/meshd" "$tmp/configure.log" ||
  { cat "$tmp/configure.log"; fail "find_package(meshd) did not find the installed package"; }
"$cmake" --build "$tmp/consumer-build" >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log"; fail "building the consumer"; }
# CMake's build RPATH points at $prefix/$libdir: no LD_LIBRARY_PATH needed.
check_attach "find_package C++ consumer" "$tmp/consumer-build/consumer"
check_attach "find_package C consumer" "$tmp/consumer-build/consumer_c"

if [ -n "$python" ]; then
  step "the Python package"
  out=$(PYTHONPATH="$prefix/$pythondir" "$python" -c '
import sys, meshd
print(meshd.__file__)
try:
    meshd.attach(job="install-test", socket=sys.argv[1], local_rank=0, local_world=1, nnodes=1,
                 timeout=2)
except meshd.Unavailable as e:
    print("attach:", e)
' "$no_socket") || fail "python: $out"
  echo "$out"
  [[ $out == "$prefix/$pythondir/meshd/__init__.py"* ]] ||
    fail "meshd imported from elsewhere: $out"
  [[ $out == *"no meshd agent socket at $no_socket"* ]] || fail "python attach printed: $out"
fi
echo "PASS"
