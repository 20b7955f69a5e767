#!/usr/bin/env bash
# Link launcher for the binaries meshd_link_deps_statically() marks (cmake/MeshdStaticDeps.cmake).
#
# Usage: link-static-deps.sh <compiler> <link arguments...>   (CMake's RULE_LAUNCH_LINK prefix)
#
# CMake writes the link line from Debian's imported targets, which name the shared libraries. This
# runs that same line with gRPC, protobuf and Abseil taken from their static archives instead
# (Debian's -dev packages ship both): every such shared library is dropped from the line and its
# archive joins one group at the end, which the linker rescans until nothing more resolves. The
# system libraries they use (OpenSSL, zlib, c-ares, RE2) stay shared so they keep Debian's
# security updates; the shared libraries on the line are named again after the group, since the
# linker only lets an archive use a shared library that comes after it. Fails, naming the file,
# when an archive is missing.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "link-static-deps.sh: usage: link-static-deps.sh <compiler> <arguments...>" >&2
  exit 2
fi

# File names (without lib/.so) linked from their archives; MeshdStaticDeps.cmake checks they exist.
static_name='^(absl_[a-z0-9_]+|grpc|grpc\+\+|grpc\+\+_reflection|gpr|upb|address_sorting|protobuf)$'

args=()
shared=()
archives=()
declare -A seen=()
for arg in "$@"; do
  name=""
  case "$arg" in
    /*/lib*.so | /*/lib*.so.*)
      file=${arg##*/}
      name=${file#lib}
      name=${name%%.so*}
      ;;
    -l*) name=${arg#-l} ;;
    @*)
      # A response file would hide the libraries from this script (CMake writes one only for
      # lines longer than the system allows, far beyond these binaries').
      echo "link-static-deps.sh: response file $arg not supported; configure with" \
           "-DMESHD_STATIC_DEPS=OFF" >&2
      exit 1
      ;;
  esac
  if [[ -n $name && $name =~ $static_name ]]; then
    if [[ $arg == /* ]]; then
      archive=${arg%/*}/lib$name.a
    else
      archive=$("$1" -print-file-name="lib$name.a")
    fi
    if [[ ! -f $archive ]]; then
      echo "link-static-deps.sh: $archive not found (static archive of $arg); install the" \
           "library's -dev package or configure with -DMESHD_STATIC_DEPS=OFF" >&2
      exit 1
    fi
    if [[ -z ${seen[$archive]:-} ]]; then
      seen[$archive]=1
      archives+=("$archive")
    fi
    continue
  fi
  args+=("$arg")
  if [[ -n $name ]]; then
    shared+=("$arg")
  fi
done

if [[ ${#archives[@]} -eq 0 ]]; then
  exec "${args[@]}"
fi
exec "${args[@]}" -Wl,--start-group "${archives[@]}" -Wl,--end-group "${shared[@]}"
