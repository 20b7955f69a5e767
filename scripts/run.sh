#!/usr/bin/env bash
# The main job: installs what is missing, builds, and plans a 64-GPU pp x dp x tp mesh on hosts of
# 8 GPUs with meshctl — groups, placement per dim, and a warning where tensor parallelism would
# cross hosts. (The control plane — meshd standalone with example workers — takes this place once
# it lands; see the README's roadmap.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
bin="$root/${BUILD_DIR:-build}/bin"

echo
echo "== meshctl plan --world 64 --shape 2,4,8 --names pp,dp,tp --gpus-per-node 8"
"$bin/meshctl" plan --world 64 --shape 2,4,8 --names pp,dp,tp --gpus-per-node 8
echo
echo "== meshctl plan --world 64 --script examples/plans/fsdp_tp.json --gpus-per-node 8"
"$bin/meshctl" plan --world 64 --script "$root/examples/plans/fsdp_tp.json" --gpus-per-node 8
