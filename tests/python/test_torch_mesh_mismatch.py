"""meshd.torch.init_device_mesh with ranks that disagree: every rank gets meshd.FailedPrecondition
naming both specs, within a second of the last rank's call — where torch would build mismatched
groups and hang in the first collective.

A standalone with 8 simulated GPUs, 8 worker processes (torch_worker.py mismatch): ranks 0-6 ask
for a (2, 4) mesh, rank 7 for (4, 2). Each worker stamps (time.time(), one host) when its call
started and when the error came.
"""

from __future__ import annotations

import meshd_cluster
from torch_support import WORKER, import_torch, parse_tagged

torch, mt = import_torch()

WORLD = 8
BOUND_S = 1.0


def test_mismatched_mesh_fails_on_every_rank_within_a_second():
    with meshd_cluster.standalone(gpus=WORLD) as d:
        results = meshd_cluster.run_workers(d.socket, "torch-mismatch", WORLD, script=WORKER,
                                            args=["mismatch"], nnodes=1, timeout=120)
        meshd_cluster.assert_all_ok(results, d.output())
    got = parse_tagged(results, "MISMATCH")
    assert sorted(r["rank"] for r in got) == list(range(WORLD))
    last_call = max(r["start"] for r in got)
    for r in got:
        assert r["type"] == "FailedPrecondition" and r["code"] == "FAILED_PRECONDITION"
        # both specs are named, on every rank
        assert "DeviceMesh((dp=2, tp=4)" in r["error"], r["error"]
        assert "DeviceMesh((dp=4, tp=2)" in r["error"], r["error"]
        took = r["end"] - last_call
        assert took < BOUND_S, f"rank {r['rank']} heard of the mismatch {took:.3f}s after the " \
                               f"last rank asked:\n{r}"
    print("mismatch reported %.3fs (max) after the last rank's call; first error: %s" %
          (max(r["end"] for r in got) - last_call, got[0]["error"]))
