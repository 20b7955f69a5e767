#!/usr/bin/env bash
# gpu-check.sh: pack what a GPU host needs to check meshd's communicators, and — on a host with
# GPUs — run the checks. The GPU hosts meshd is checked on are bare (no gRPC, Abseil or protobuf;
# maybe no compiler), so the pack brings the binaries and every shared library they load that is
# not glibc's or the GPU driver's/CUDA's/NCCL's own.
#
#   scripts/gpu-check.sh                     pack build/ into build/gpu-check/ and
#                                            build/gpu-check.tar.gz (fails past 64 MiB), then run
#                                            the checks here (SKIP lines without a GPU)
#   scripts/gpu-check.sh --pack-only         only pack
#   scripts/gpu-check.sh --from-pack P       run the checks from a pack (its folder or tarball) on
#                                            the GPU host:   tar xzf gpu-check.tar.gz &&
#                                            gpu-check/gpu-check.sh --from-pack gpu-check
#   scripts/gpu-check.sh --from-pack P --store-bench
#                                            instead of the checks, the store benchmark on that
#                                            host's cores (needs no GPU): the pack's store_bench
#                                            against the host's PyTorch TCPStore
#                                            (bench/store_compare.py), 1,024 nodes x 8 ranks, with
#                                            and without barriers, the servers on one CPU and on
#                                            any; JSON lines and tables on stdout, a copy under
#                                            $OUT when set
#   options: --build DIR (default build), --out DIR (default <build>), --timeout S (per check,
#            default 120), --simulate (run the checks' plumbing on simulated GPUs here: no NCCL
#            communicator is made; for testing this script), --store-bench-nodes N,M (default
#            1024), --store-bench-repeat R (default 2), --python P (the python3 with torch for
#            --store-bench; default python3)
#
# The pack (gpu-check/): bin/ (meshd, meshctl, mesh_worker, store_bench), bench/
# (store_compare.py), lib/ (libmeshd_client.so and what
# `ldd` lists that a bare host lacks), tests/ (the binaries of the `gpu`-labelled ctest tests and
# their list), python/ (build/python's package, when built), gpu-check.sh (this script).
#
# Checks, one line each: "PASS|FAIL|SKIP  <check>  <detail>":
#   binaries          the packed meshd runs here (a glibc older than the build host's cannot)
#   nccl              the NCCL the client will load (MESHD_NCCL_LIBRARY, else the host's
#                     libnccl.so.2, else PyTorch's under site-packages/nvidia/nccl/lib) and its version
#   gpu-test:<name>   each `gpu`-labelled ctest test, from the pack
#   worker:<mode>     mesh_worker on every GPU (up to 8) for initrank, scalable, split: a real
#                     communicator per mesh dim and an all-reduce with its sum checked
#   worker:split-smaller-than-world   a mesh of half the ranks; the others split with no color
#   abort:worker-killed   all-reduces in a loop, one worker killed (kill -9): the others' generation
#                     ends and their communicators are aborted — ABORTED, not a hang
#   abort:job-ended   the same with `meshctl job end`
#   python            the packed Python package imports
# Exit status: 0 no FAIL, 1 a check failed, 2 the pack could not be made (or is over 64 MiB).
# From a checkout on the GPU host that carried only the tarball (build/ is not versioned):
#   scripts/gpu-check.sh --from-pack build/gpu-check.tar.gz
set -uo pipefail

self=$(readlink -f "$0")
root=$(cd "$(dirname "$self")/.." && pwd)
build="$root/build"
out=""
pack_only=0
from_pack=""
timeout_s=120
simulate=0
store_bench=0
store_bench_nodes=1024
store_bench_repeat=2
python=python3
limit=$((64 * 1024 * 1024))
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$(readlink -f "$2"); shift 2 ;;
    --out) out=$(readlink -f "$2"); shift 2 ;;
    --pack-only) pack_only=1; shift ;;
    --from-pack) from_pack=$(readlink -f "$2"); shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --simulate) simulate=1; shift ;;
    --store-bench) store_bench=1; shift ;;
    --store-bench-nodes) store_bench_nodes="$2"; shift 2 ;;
    --store-bench-repeat) store_bench_repeat="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo pipefail/p' "$self" | sed '$d'; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || out="$build"

failed=0
report() {  # report PASS|FAIL|SKIP check detail...
  local verdict="$1" check="$2"
  shift 2
  local note=""
  [ "$simulate" = 1 ] && [ "$verdict" = PASS ] && note=" [--simulate: plumbing only]"
  printf '%-5s %-34s %s%s\n' "$verdict" "$check" "$*" "$note"
  [ "$verdict" = FAIL ] && failed=1
  return 0
}

# ------------------------------------------------------------------------------------------------
# Packing.

# glibc's own libraries and the loader: the host's must be used.
is_base_lib() {
  case "$1" in
    linux-vdso.so*|ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|\
    libutil.so*|libnsl.so*|libanl.so*) return 0 ;;
  esac
  return 1
}
# The driver's, CUDA's and NCCL's libraries come from the GPU host, never from the pack.
is_gpu_lib() {
  case "$1" in
    libcuda.so*|libnvidia-*|libcudart.so*|libnccl.so*|libnvrtc*|libcublas*) return 0 ;;
  esac
  return 1
}

copy_deps() {  # copy_deps FILE LIBDIR: the shared libraries FILE loads, except glibc's and GPU's
  local file="$1" libdir="$2" name path
  while read -r name _ path _; do
    [ -n "$name" ] || continue
    is_base_lib "$name" && continue
    is_gpu_lib "$name" && continue
    case "$path" in
      /*) ;;
      *) [ "$path" = "not" ] && { echo "gpu-check: $file needs $name, which is not found" >&2; return 1; }
         continue ;;
    esac
    [ -e "$libdir/$name" ] || cp -L "$path" "$libdir/$name"
  done < <(ldd "$file" 2>/dev/null | awk '/=>/ {print $1, $2, $3, $4}')
}

make_pack() {
  local pack="$out/gpu-check"
  for f in "$build/bin/meshd" "$build/bin/meshctl" "$build/bin/mesh_worker" \
           "$build/lib/libmeshd_client.so"; do
    if [ ! -x "$f" ] && [ ! -f "$f" ]; then
      echo "gpu-check: $f is missing: build first (scripts/build.sh, or cmake --build $build)" >&2
      return 1
    fi
  done
  rm -rf "$pack" "$out/gpu-check.tar.gz"
  mkdir -p "$pack/bin" "$pack/lib" "$pack/tests"
  cp "$build/bin/meshd" "$build/bin/meshctl" "$build/bin/mesh_worker" "$pack/bin/"
  cp "$build/lib/libmeshd_client.so" "$pack/lib/"
  if [ -x "$build/bin/store_bench" ]; then  # the store benchmark (--store-bench)
    cp "$build/bin/store_bench" "$pack/bin/"
    mkdir -p "$pack/bench"
    cp "$root/bench/store_compare.py" "$pack/bench/"
  fi
  # The gpu-labelled tests: the commands ctest would run, from the pack.
  local list="$pack/tests/tests.txt"
  : > "$list"
  if command -v ctest >/dev/null && [ -f "$build/CTestTestfile.cmake" ]; then
    ctest --test-dir "$build" -L gpu -N --show-only=json-v1 2>/dev/null |
      /usr/bin/env python3 -c '
import json, os, sys
for t in json.load(sys.stdin).get("tests", []):
    cmd = t.get("command") or []
    if not cmd: continue
    filt = [a.split("=", 1)[1] for a in cmd[1:] if a.startswith("--gtest_filter=")]
    print(t["name"], os.path.basename(cmd[0]), cmd[0], filt[0] if filt else "*")
' > "$list.full" || true
    while read -r name bin path filter; do
      [ -f "$pack/tests/$bin" ] || cp "$path" "$pack/tests/$bin"
      echo "$name $bin $filter" >> "$list"
    done < "$list.full"
    rm -f "$list.full"
  fi
  if [ ! -s "$list" ]; then
    echo "gpu-check: no gpu-labelled tests found in $build (ctest -L gpu -N)" >&2
    return 1
  fi
  if [ -d "$build/python/meshd" ]; then
    mkdir -p "$pack/python"
    cp -r "$build/python/meshd" "$pack/python/"
    find "$pack/python" -name __pycache__ -prune -exec rm -rf {} +
  fi
  local f
  for f in "$pack"/bin/* "$pack"/lib/*.so "$pack"/tests/*; do
    [ -f "$f" ] && [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = "177ELF" ] || continue
    copy_deps "$f" "$pack/lib" || return 1
  done
  if [ -d "$pack/python" ]; then
    while IFS= read -r f; do copy_deps "$f" "$pack/lib" || return 1; done \
      < <(find "$pack/python" -name '*.so')
  fi
  cp "$self" "$pack/gpu-check.sh"
  chmod +x "$pack/gpu-check.sh"
  tar czf "$out/gpu-check.tar.gz" -C "$out" gpu-check
  local folder_bytes tar_bytes
  folder_bytes=$(du -sb "$pack" | cut -f1)
  tar_bytes=$(stat -c %s "$out/gpu-check.tar.gz")
  echo "gpu-check: packed $out/gpu-check ($((folder_bytes / 1024 / 1024)) MiB, $(ls "$pack/lib" | wc -l) libraries)" \
       "and $out/gpu-check.tar.gz ($tar_bytes bytes, $((tar_bytes / 1024 / 1024)) MiB; limit 64 MiB)"
  if [ "$tar_bytes" -gt "$limit" ]; then
    echo "gpu-check: the tarball is over 64 MiB" >&2
    return 1
  fi
  if [ "$folder_bytes" -gt "$limit" ]; then
    echo "gpu-check: the folder is over 64 MiB: carry the tarball, not the folder" >&2
  fi
  pack_dir="$pack"
}

pack_dir=""
temps=()  # folders this run made, removed when it exits
remove_temps() { [ ${#temps[@]} -eq 0 ] || rm -rf "${temps[@]}"; }
trap remove_temps EXIT
if [ -n "$from_pack" ]; then
  if [ -f "$from_pack" ]; then  # a tarball: unpack it beside itself
    dest=$(mktemp -d)
    temps+=("$dest")
    tar xzf "$from_pack" -C "$dest" || { echo "gpu-check: cannot unpack $from_pack" >&2; exit 2; }
    pack_dir="$dest/gpu-check"
  else
    pack_dir="$from_pack"
  fi
  [ -x "$pack_dir/bin/meshd" ] || { echo "gpu-check: $pack_dir is not a pack (no bin/meshd)" >&2; exit 2; }
else
  make_pack || exit 2
fi
[ "$pack_only" = 1 ] && exit 0

# ------------------------------------------------------------------------------------------------
# The store benchmark (--store-bench): meshd's store against the host's TCPStore, on its cores.

run_store_bench() {
  if [ ! -x "$pack_dir/bin/store_bench" ] || [ ! -f "$pack_dir/bench/store_compare.py" ]; then
    echo "gpu-check: the pack has no store_bench (cmake --build build --target store_bench)" >&2
    return 2
  fi
  if ! "$python" -c 'import torch.distributed' 2>/dev/null; then
    echo "gpu-check: --store-bench needs a python3 with torch (--python)" >&2
    return 2
  fi
  local sb_work rc=0 cpu barriers first_cpu
  sb_work=$(mktemp -d)
  temps+=("$sb_work")
  # store_bench (and the coordinator it starts) see the pack's libraries; python3 and torch keep
  # their own.
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" --meshd "%s" "$@"\n' \
    "$pack_dir/lib" "$pack_dir/bin/store_bench" "$pack_dir/bin/meshd" > "$sb_work/store_bench"
  chmod +x "$sb_work/store_bench"
  first_cpu=$("$python" -c 'import os; print(min(os.sched_getaffinity(0)))')
  echo "gpu-check: store benchmark on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); torch $("$python" -c 'import torch; print(torch.__version__)')"
  for cpu in "$first_cpu" -1; do
    for barriers in "" --no-barriers; do
      echo "gpu-check: store_compare.py --server-cpu $cpu ${barriers:-(barriers)}"
      # shellcheck disable=SC2086  # $barriers: no argument or one
      "$python" "$pack_dir/bench/store_compare.py" --store-bench "$sb_work/store_bench" \
        --nodes "$store_bench_nodes" --repeat "$store_bench_repeat" --server-cpu "$cpu" \
        $barriers 2>&1 | tee -a "$sb_work/store_bench.txt"
      [ "${PIPESTATUS[0]}" = 0 ] || rc=1
    done
  done
  [ -n "${OUT:-}" ] && [ -d "$OUT" ] && cp "$sb_work/store_bench.txt" "$OUT/store_bench.txt"
  return $rc
}
if [ "$store_bench" = 1 ]; then
  run_store_bench
  exit $?
fi

# ------------------------------------------------------------------------------------------------
# The checks.

checks=(binaries nccl)
while read -r name _ _; do checks+=("gpu-test:$name"); done < "$pack_dir/tests/tests.txt"
checks+=(worker:initrank worker:scalable worker:split worker:split-smaller-than-world
         abort:worker-killed abort:job-ended python)

gpus=0
if [ "$simulate" = 0 ]; then
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    for c in "${checks[@]}"; do report SKIP "$c" "no GPU on this host (nvidia-smi -L fails)"; done
    exit 0
  fi
  gpus=$(nvidia-smi -L | grep -c '^GPU ')
  if [ "$gpus" -lt 1 ]; then
    for c in "${checks[@]}"; do report SKIP "$c" "nvidia-smi -L lists no GPU"; done
    exit 0
  fi
else
  gpus=4
  echo "gpu-check: --simulate: the plumbing only, on 4 simulated GPUs; no communicator is made"
fi

work=$(mktemp -d)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
  remove_temps
}
trap cleanup EXIT

# Only the pack's own programs see its libraries (a python3 with PyTorch keeps its own).
packed_libs="$pack_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
packed() { LD_LIBRARY_PATH="$packed_libs" "$@"; }  # (in the background: env, so $! is the pid)
bin="$pack_dir/bin"

py() { command -v python3 >/dev/null && python3 "$@"; }

# The NCCL (and CUDA runtime) the client loads: the environment's, the host's, else PyTorch's.
site_lib() {  # site_lib SUBDIR FILE: the first site-packages/SUBDIR/FILE
  py - "$1" "$2" <<'EOF' 2>/dev/null
import glob, os, site, sys
dirs = list(getattr(site, "getsitepackages", lambda: [])()) + [site.getusersitepackages()]
try:
    import torch
    dirs.append(os.path.dirname(os.path.dirname(torch.__file__)))
except Exception:
    pass
for d in dirs:
    for hit in sorted(glob.glob(os.path.join(d, sys.argv[1], sys.argv[2]))):
        print(hit); sys.exit(0)
EOF
}
if [ -z "${MESHD_NCCL_LIBRARY:-}" ]; then
  if ldconfig -p 2>/dev/null | grep -q 'libnccl.so.2 '; then
    export MESHD_NCCL_LIBRARY=libnccl.so.2
  else
    torch_nccl=$(site_lib nvidia/nccl/lib libnccl.so.2)
    [ -n "$torch_nccl" ] || torch_nccl=$(site_lib torch/lib 'libnccl.so*')
    [ -n "$torch_nccl" ] && export MESHD_NCCL_LIBRARY="$torch_nccl"
  fi
fi
if [ -z "${MESHD_CUDART_LIBRARY:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcudart.so'; then
  torch_cudart=$(site_lib nvidia/cuda_runtime/lib 'libcudart.so*')
  [ -n "$torch_cudart" ] && export MESHD_CUDART_LIBRARY="$torch_cudart"
fi

# The packed binaries run here (an older glibc than the build host's cannot be packed around).
if msg=$(packed "$bin/meshd" --version 2>&1); then
  report PASS binaries "$msg, $(ls "$pack_dir/lib" | wc -l) packed libraries"
else
  report FAIL binaries "meshd does not run here: $(echo "$msg" | head -2 | tr '\n' ' ')"
fi

nccl_ok=0
if [ "$simulate" = 1 ]; then
  report SKIP nccl "--simulate"
elif version=$(packed "$bin/mesh_worker" --check-nccl 2>&1); then
  nccl_ok=1
  report PASS nccl "$version"
else
  report FAIL nccl "$version (set MESHD_NCCL_LIBRARY to a libnccl.so.2)"
fi

# gpu-labelled tests, each as ctest runs it (--gtest_filter), meshd from the pack.
while read -r name test_bin filter; do
  log="$work/test-$name.log"
  if MESHD_TEST_MESHD="$bin/meshd" packed timeout "$timeout_s" "$pack_dir/tests/$test_bin" \
       --gtest_filter="$filter" > "$log" 2>&1; then
    if grep -q '^\[  SKIPPED \]' "$log"; then
      report SKIP "gpu-test:$name" "$(grep -m1 -B1 '^\[  SKIPPED \]' "$log" | head -1 | cut -c1-120)"
    else
      report PASS "gpu-test:$name" "$(grep -m1 -o '([0-9]* ms)' "$log")"
    fi
  else
    rc=$?
    report FAIL "gpu-test:$name" "exit $rc$([ $rc = 124 ] && echo ' (timed out: a hang)'):" \
      "$(grep -m1 -A2 'Failure' "$log" | tr '\n' ' ' | cut -c1-200)"
  fi
done < "$pack_dir/tests/tests.txt"

# One meshd standalone for the worker checks: real GPUs through NVML; simulated with --simulate.
world=$((gpus < 8 ? gpus : 8))
start_daemon() {  # start_daemon [--simulate-gpus N]
  local sock="$work/agent.sock" gpu_flag=("$@")
  rm -f "$sock"
  env LD_LIBRARY_PATH="$packed_libs" "$bin/meshd" standalone --listen 127.0.0.1:0 --socket "$sock" --node-name gpu-check \
    "${gpu_flag[@]}" > "$work/daemon.log" 2>&1 &
  daemon_pid=$!
  local i
  for i in $(seq 200); do
    grep -q 'listening on' "$work/daemon.log" && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  coordinator=$(grep -o 'listening on [^ ]*' "$work/daemon.log" | head -1 | cut -d' ' -f3)
  [ -n "$coordinator" ]
}
gpu_note="GPUs found by NVML"
if [ "$simulate" = 1 ]; then
  start_daemon --simulate-gpus "$world"
elif ! start_daemon; then
  # No NVML (libnvidia-ml.so.1) for the agent: declare the GPUs; the client still uses the real
  # devices (placement i -> CUDA device i).
  kill "$daemon_pid" 2>/dev/null
  gpu_note="NVML failed ($(grep -m1 -i 'gpu\|nvml' "$work/daemon.log" | cut -c1-80)); $world declared GPUs"
  start_daemon --simulate-gpus "$world"
fi
[ "$simulate" = 1 ] || echo "gpu-check: meshd standalone at $coordinator with $gpu_note; NCCL: ${MESHD_NCCL_LIBRARY:-libnccl.so.2}"
if [ -z "${coordinator:-}" ]; then
  for c in worker:initrank worker:scalable worker:split worker:split-smaller-than-world \
           abort:worker-killed abort:job-ended; do
    report FAIL "$c" "meshd standalone did not start: $(tail -2 "$work/daemon.log" | tr '\n' ' ')"
  done
  world=0
fi

# A shape with `n` ranks, a dim per factor of two (an all-reduce per dim): 8 -> 2,2,2; 6 -> 2,3.
shape_for() {
  local n=$1 shape="" names="" i=0
  local dims=(pp dp tp)
  while [ "$n" -gt 2 ] && [ $((n % 2)) = 0 ] && [ $i -lt 2 ]; do
    shape+="2,"; names+="${dims[$i]},"; n=$((n / 2)); i=$((i + 1))
  done
  shape+="$n"; names+="${dims[$i]}"
  echo "$shape $names"
}

# run_workers JOB N SHAPE NAMES MODE EXTRA...: N workers in the background; pids in $pids.
run_workers() {
  local job=$1 n=$2 shape=$3 names=$4 mode=$5
  shift 5
  pids=()
  local i require=(--require-nccl)
  [ "$simulate" = 1 ] && require=()
  for i in $(seq 0 $((n - 1))); do
    env LD_LIBRARY_PATH="$packed_libs" timeout "$timeout_s" "$bin/mesh_worker" --socket "$work/agent.sock" --job "$job" \
      --local-rank "$i" --nnodes 1 --shape "$shape" --names "$names" --comm-init "$mode" --json \
      "${require[@]}" "$@" > "$work/$job.$i.out" 2> "$work/$job.$i.err" &
    pids+=($!)
  done
}

# The worker's first JSON object checks out: communicators made and `dims` sums checked (the
# worker itself compares each sum with the expected one and fails otherwise).
worker_ok() {  # worker_ok FILE DIMS -> prints a reason when not
  py - "$1" "$2" "$simulate" <<'EOF'
import json, sys
path, dims, simulate = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
try:
    first = json.loads(open(path).readline())
except Exception as e:
    print(f"no JSON from the worker ({e})"); sys.exit(1)
if "error" in first:
    print(f"{first['error']['during']}: {first['error']['code']}: {first['error']['message'][:160]}"); sys.exit(1)
if simulate:
    sys.exit(0 if first.get("communicators", "").startswith(("skipped", "ok")) else 1)
if first.get("communicators") != "ok":
    print(f"communicators: {first.get('communicators')}"); sys.exit(1)
if len(first.get("allreduce", [])) != dims:
    print(f"{len(first.get('allreduce', []))} all-reduces checked, expected {dims}"); sys.exit(1)
EOF
}

worker_check() {  # worker_check CHECK JOB N SHAPE NAMES MODE [--world W]
  local check=$1 job=$2 n=$3 shape=$4 names=$5 mode=$6
  shift 6
  run_workers "$job" "$n" "$shape" "$names" "$mode" "$@"
  local i rc bad="" members
  members=1
  for d in ${shape//,/ }; do members=$((members * d)); done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    rc=$?
    if [ $rc != 0 ]; then
      bad="rank $i exit $rc$([ $rc = 124 ] && echo ' (timed out: a hang)'): $(grep -m1 mesh_worker "$work/$job.$i.err" | cut -c1-200)"
      break
    fi
    local dims=$(( i < members ? $(echo "$names" | tr ',' '\n' | wc -l) : 0 ))
    if ! why=$(worker_ok "$work/$job.$i.out" "$dims"); then
      bad="rank $i: $why"
      break
    fi
  done
  if [ -z "$bad" ]; then
    report PASS "$check" "$n ranks, mesh $shape ($names), an all-reduce per dim with its sum checked"
  elif [[ "$bad" == *"(NCCL >= "* ]]; then
    report SKIP "$check" "the loaded NCCL is too old: ${bad#*: }"
  else
    report FAIL "$check" "$bad"
  fi
}

if [ "$world" -gt 0 ]; then
  read -r shape names < <(shape_for "$world")
  for mode in initrank scalable split; do
    if [ "$simulate" = 0 ] && [ "$nccl_ok" = 0 ]; then
      report SKIP "worker:$mode" "no NCCL (see the nccl check)"
      continue
    fi
    worker_check "worker:$mode" "w-$mode" "$world" "$shape" "$names" "$mode"
  done
  if [ "$world" -lt 2 ]; then
    report SKIP worker:split-smaller-than-world "needs 2 GPUs (NCCL refuses two ranks on one GPU); this host has $gpus"
  elif [ "$simulate" = 0 ] && [ "$nccl_ok" = 0 ]; then
    report SKIP worker:split-smaller-than-world "no NCCL"
  else
    read -r half_shape half_names < <(shape_for $((world / 2)))
    worker_check worker:split-smaller-than-world w-smaller "$world" "$half_shape" "$half_names" \
      split --world "$world"
  fi

  # abort_check CHECK JOB N TRIGGER: all-reduces until the generation ends, then every surviving
  # worker must say its communicators were aborted and its all-reduce answered ABORTED.
  abort_check() {
    local check=$1 job=$2 n=$3 trigger=$4
    read -r shape names < <(shape_for "$n")
    run_workers "$job" "$n" "$shape" "$names" initrank --wait --allreduce-until-end
    local i ready=0 deadline=$((SECONDS + timeout_s))
    while [ $SECONDS -lt $deadline ]; do  # every worker made its communicators and printed
      ready=0
      for i in $(seq 0 $((n - 1))); do [ -s "$work/$job.$i.out" ] && ready=$((ready + 1)); done
      [ "$ready" = "$n" ] && break
      sleep 0.2
    done
    if [ "$ready" != "$n" ]; then
      report FAIL "$check" "only $ready of $n workers got their communicators in ${timeout_s}s"
      kill "${pids[@]}" 2>/dev/null
      return
    fi
    local survivors=("${!pids[@]}")
    if [ "$trigger" = kill ]; then
      # The worker itself (the pid is its `timeout`'s): a node loss as SIGKILL does it.
      kill -9 $(pgrep -P "${pids[$((n - 1))]}") 2>/dev/null
      wait "${pids[$((n - 1))]}" 2>/dev/null
      unset "survivors[$((n - 1))]"
    else
      packed "$bin/meshctl" --coordinator "$coordinator" job end "$job" --reason gpu-check > "$work/$job.end" 2>&1 ||
        { report FAIL "$check" "meshctl job end: $(cat "$work/$job.end")"; return; }
    fi
    local bad=""
    for i in "${survivors[@]}"; do
      wait "${pids[$i]}"
      local rc=$?
      if [ $rc != 0 ]; then
        bad="rank $i exit $rc$([ $rc = 124 ] && echo ' (timed out: its all-reduce hung)')"
        break
      fi
      why=$(py - "$work/$job.$i.out" "$simulate" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
ended = next((json.loads(l)["ended"] for l in lines if l.startswith('{"ended"')), None)
if ended is None: print("no 'ended' report"); sys.exit(1)
if ended["code"] != "ABORTED": print(f"the end answered {ended['code']}"); sys.exit(1)
if sys.argv[2] == "1": sys.exit(0)
if ended["communicators"] == 0 or ended["communicators_aborted"] != ended["communicators"]:
    print(f"{ended['communicators_aborted']} of {ended['communicators']} communicators aborted"); sys.exit(1)
# ABORTED: meshd's abort ended it; INTERNAL: NCCL saw the peer go first (then meshd aborted it).
at_end = ended.get("allreduce_at_end")
if at_end not in ("ABORTED", "INTERNAL"):
    print(f"the all-reduce at the end answered {at_end}"); sys.exit(1)
print(f"the all-reduce answered {at_end} after {ended.get('allreduces_before_end')} rounds")
EOF
) || { bad="rank $i: $why"; break; }
    done
    if [ -z "$bad" ]; then
      report PASS "$check" "${#survivors[@]} workers: every communicator aborted, no hang${why:+; $why}"
    else
      report FAIL "$check" "$bad"
    fi
  }
  if [ "$simulate" = 0 ] && [ "$nccl_ok" = 0 ]; then
    report SKIP abort:worker-killed "no NCCL"
    report SKIP abort:job-ended "no NCCL"
  else
    if [ "$world" -lt 2 ]; then
      report SKIP abort:worker-killed "needs 2 GPUs; this host has $gpus"
    else
      abort_check abort:worker-killed a-kill "$world" kill
    fi
    abort_check abort:job-ended a-end "$world" end
  fi
fi

if [ ! -d "$pack_dir/python" ]; then
  report SKIP python "no Python package in the pack (build/python was not built)"
elif ! command -v python3 >/dev/null; then
  report SKIP python "no python3 on this host"
elif msg=$(PYTHONPATH="$pack_dir/python" packed python3 -c 'import meshd; print(meshd.__file__)' 2>&1); then
  report PASS python "imports from $msg"
else
  ext=$(basename "$(ls "$pack_dir"/python/meshd/_core.*.so 2>/dev/null | head -1)")
  report SKIP python "$(python3 -V 2>&1) cannot import the pack's $ext: $(echo "$msg" | tail -1 | cut -c1-120)"
fi
exit "$failed"
