#!/usr/bin/env bash
# PyTorch on meshd: installs what is missing, builds (the Python package lands in build/python),
# starts `meshd standalone` with 4 simulated GPUs and trains examples/torch_train.py on its 4 local
# ranks (CPU, gloo): each process calls init_process_group(init_method="meshd://") — no
# MASTER_ADDR, no port, meshd gives the rank and serves the store — and builds a dp=2 x tp=2 mesh
# whose groups carry the model's all-reduces. Exits non-zero if any rank fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
build="$root/${BUILD_DIR:-build}"
python=/usr/bin/python3  # Debian's, which has python3-torch

work=$(mktemp -d)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== meshd standalone --listen 127.0.0.1:0 --socket $work/agent.sock --simulate-gpus 4"
"$build/bin/meshd" standalone --listen 127.0.0.1:0 --socket "$work/agent.sock" --simulate-gpus 4 \
  --node-name torch-demo >"$work/meshd.out" 2>"$work/meshd.log" &
daemon_pid=$!
for _ in $(seq 100); do grep -q listening "$work/meshd.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$work/meshd.out" || { echo "meshd did not start:"; cat "$work/meshd.log"; exit 1; }

echo "== 4 ranks: python3 examples/torch_train.py --tp 2 (init_method=\"meshd://\")"
pids=()
for rank in 0 1 2 3; do
  MESHD_SOCKET="$work/agent.sock" MESHD_JOB=torch-demo MESHD_NNODES=1 LOCAL_RANK=$rank \
    LOCAL_WORLD_SIZE=4 PYTHONPATH="$build/python" \
    "$python" "$root/examples/torch_train.py" --tp 2 >"$work/rank$rank.out" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed=1
  cat "$work/rank$i.out"
done
[ "$failed" = 0 ] || { echo "a rank failed; meshd's log:"; tail -n 20 "$work/meshd.log"; exit 1; }
