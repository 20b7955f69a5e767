#!/usr/bin/env bash
# The main job: installs what is missing, builds, then
#   1. plans a 64-GPU pp x dp x tp mesh on hosts of 8 GPUs (meshctl plan: no cluster needed);
#   2. starts `meshd standalone` (coordinator + agent) with 8 simulated GPUs, attaches 8 workers to a
#      job, and shows what meshctl sees; then stops the daemon and shows the workers being told.
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
echo "== 8 workers attach to job 'demo' (one per simulated GPU)"
for rank in 0 1 2 3 4 5 6 7; do
  "$bin/raw_attach_worker" "$work/agent.sock" demo "$rank" 8 1 >"$work/worker$rank.out" &
done
for rank in 0 1 2 3 4 5 6 7; do
  for _ in $(seq 100); do grep -q watching "$work/worker$rank.out" 2>/dev/null && break; sleep 0.1; done
  echo "worker $rank: $(head -n 1 "$work/worker$rank.out")"
done

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
