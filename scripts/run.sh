#!/usr/bin/env bash
# The main job: installs what is missing, builds, then
#   1. plans a 64-GPU pp x dp x tp mesh on hosts of 8 GPUs (meshctl plan: no cluster needed);
#   2. starts `meshd standalone` (coordinator + agent) with 8 simulated GPUs and runs the example
#      worker (libmeshd_client) on every local rank: each builds a pp x dp x tp mesh and gets its
#      groups' NCCL unique ids; shows what meshctl sees; then stops the daemon and shows every worker
#      being told its generation ended.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
bin="$root/${BUILD_DIR:-build}/bin"

echo
echo "== 1. meshctl plan --world 64 --shape 2,4,8 --names pp,dp,tp --gpus-per-node 8"
"$bin/meshctl" plan --world 64 --shape 2,4,8 --names pp,dp,tp --gpus-per-node 8

work=$(mktemp -d)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo
echo "== 2. meshd standalone --listen 127.0.0.1:0 --socket $work/agent.sock --simulate-gpus 8"
"$bin/meshd" standalone --listen 127.0.0.1:0 --socket "$work/agent.sock" --simulate-gpus 8 \
  --node-name demo-node >"$work/meshd.out" 2>"$work/meshd.log" &
daemon_pid=$!
for _ in $(seq 100); do grep -q listening "$work/meshd.out" 2>/dev/null && break; sleep 0.1; done
cat "$work/meshd.out"
address=$(sed -n 's/^meshd standalone listening on \([^ ]*\) .*/\1/p' "$work/meshd.out")
[ -n "$address" ] || { echo "meshd did not start:"; cat "$work/meshd.log"; exit 1; }

echo
echo "== 8 workers (mesh_worker, one per simulated GPU) build a pp=2 x dp=2 x tp=2 mesh and get"
echo "   every group's NCCL unique id (minted by the group's first member with ncclGetUniqueId)"
for rank in 0 1 2 3 4 5 6 7; do
  "$bin/mesh_worker" --socket "$work/agent.sock" --job demo --local-rank "$rank" --nnodes 1 \
    --shape 2,2,2 --names pp,dp,tp --flatten dp,tp --wait >"$work/worker$rank.out" 2>&1 &
done
echo "   (each group: its members, then the first bytes of its id; members of a group hold the same id)"
for rank in 0 1 2 3 4 5 6 7; do
  for _ in $(seq 300); do grep -q -e 'communicators:' -e '^mesh_worker:' "$work/worker$rank.out" && break; sleep 0.1; done
  head -n 1 "$work/worker$rank.out"
done
sed -n '2,3p' "$work/worker0.out"
echo
echo "== meshctl --coordinator $address job demo"
"$bin/meshctl" --coordinator "$address" job demo
echo
echo "== meshctl --coordinator $address nodes"
"$bin/meshctl" --coordinator "$address" nodes
echo
echo "== meshctl --agent $work/agent.sock status"
"$bin/meshctl" --agent "$work/agent.sock" status

echo
echo "== SIGTERM to meshd: every worker is told its generation ended"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""
wait
for rank in 0 1 2 3 4 5 6 7; do echo "worker $rank: $(tail -n 1 "$work/worker$rank.out")"; done
