#!/bin/sh
# Copies NCCL (libnccl.so.2) and the CUDA runtime (libcudart.so.*) that a CUDA/NCCL image holds into
# OUT_DIR, for the training image (Dockerfile beside this file), and fails naming what is missing.
# NVIDIA builds both for old glibc, so they run in the meshd image (Debian 12). Searches the
# loader's cache, then the places CUDA images and NVIDIA's pip wheels keep them; MESHD_NCCL_SEARCH
# (directories, colon-separated) replaces that search (tests).
# Usage: collect-nccl.sh OUT_DIR
set -eu
out=${1:?usage: collect-nccl.sh OUT_DIR}
mkdir -p "$out"
if [ -n "${MESHD_NCCL_SEARCH:-}" ]; then
  dirs=$(printf '%s' "$MESHD_NCCL_SEARCH" | tr ':' ' ')
else
  cached=$(ldconfig -p 2>/dev/null | awk '/libnccl\.so\.2 |libcudart\.so\.[0-9]+ /{print $NF}' | xargs -r -n1 dirname)
  dirs="$cached /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu $(ls -d /usr/local/lib/python3*/dist-packages/nvidia/*/lib /usr/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null || true)"
fi
find_lib() {  # the first file matching $1 in $dirs
  for d in $dirs; do
    for f in "$d"/$1; do [ -e "$f" ] && { echo "$f"; return 0; }; done
  done
  return 1
}
nccl=$(find_lib 'libnccl.so.2') || {
  echo "collect-nccl: no libnccl.so.2 in the base image (searched: $dirs). Build with --build-arg BASE=<a CUDA image that has NCCL>, e.g. one with the libnccl2 package or NVIDIA's PyTorch image" >&2
  exit 1
}
cudart=$(find_lib 'libcudart.so.[0-9]*') || {
  echo "collect-nccl: no libcudart.so.* (the CUDA runtime) in the base image (searched: $dirs); libmeshd_client needs it for communicators: use a CUDA runtime image as BASE" >&2
  exit 1
}
cp -L "$nccl" "$out/libnccl.so.2"
cp -L "$cudart" "$out/$(basename "$cudart")"
echo "collect-nccl: $nccl and $cudart -> $out"
