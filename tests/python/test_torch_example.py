"""examples/torch_train.py runs: dp x tp training on CPU (gloo) over meshd, one process per local
rank of a standalone with 4 simulated GPUs; every rank reports a falling loss and no replica
drift, and exits 0. Also under torchrun (single node), the launch docs/python.md shows.
"""

from __future__ import annotations

import re

import meshd_cluster
from torch_support import EXAMPLE, import_torch

torch, mt = import_torch()

# Not anchored: under torchrun the ranks share one stdout, and a line's newline may come after
# another rank's text.
LINE = re.compile(r"rank (\d+)/(\d+) node (\d+) local (\d+) dp (\d+)/(\d+) tp (\d+)/(\d+) "
                  r"coord \((\d+), (\d+)\): loss ([\d.]+) -> ([\d.]+) in \d+ steps, replica drift 0, "
                  r"[\d.]+s ok")


def _check_lines(lines, world, tp):
    found = {}
    for m in LINE.finditer("\n".join(lines)):
        rank, w, _, _, dp_rank, dp, tp_rank, tp_size, c0, c1, first, last = m.groups()
        assert int(w) == world and int(tp_size) == tp and int(dp) == world // tp
        assert (int(c0), int(c1)) == (int(dp_rank), int(tp_rank)) == divmod(int(rank), tp)
        assert float(last) < 0.5 * float(first)
        found[int(rank)] = m.group(0)
    assert sorted(found) == list(range(world)), "\n".join(lines)
    return found


def test_example_per_rank_processes():
    with meshd_cluster.standalone(gpus=4) as d:
        results = meshd_cluster.run_workers(d.socket, "torch-example", 4, script=EXAMPLE,
                                            args=["--tp", "2", "--steps", "40"], nnodes=1,
                                            timeout=150)
        meshd_cluster.assert_all_ok(results, d.output())
    lines = [line for r in results for line in r.stdout.splitlines()]
    for line in _check_lines(lines, 4, 2).values():
        print(line)


def test_example_exits_non_zero_on_failure():
    # A world that --tp does not divide: every rank says so and exits non-zero.
    with meshd_cluster.standalone(gpus=2) as d:
        results = meshd_cluster.run_workers(d.socket, "torch-example-bad", 2, script=EXAMPLE,
                                            args=["--tp", "3"], nnodes=1, timeout=120)
    assert all(r.returncode not in (0, None) for r in results), "\n".join(map(str, results))


def _torchrun_std_workaround():
    # torch 1.13's torchrun under Python >= 3.11 reads its default --redirects/--tee "0" as None
    # (Std.from_str iterates an IntFlag, which no longer yields NONE) and fails at start; naming a
    # stream avoids it. docs/python.md says so.
    if tuple(int(x) for x in torch.__version__.split(".")[:2]) < (2, 0):
        return ["--redirects", "2", "--tee", "2"]
    return []


def test_example_under_torchrun():
    # torchrun starts the local ranks (LOCAL_RANK, LOCAL_WORLD_SIZE); meshd gives the rank.
    with meshd_cluster.standalone(gpus=4) as d:
        env = meshd_cluster.worker_env(d.socket, "torch-example-torchrun", None, None, 1)
        p = meshd_cluster.Process(
            # torchrun's --standalone, on a free port instead of its fixed 29400 (tests may run
            # side by side)
            [meshd_cluster.python_bin(), "-m", "torch.distributed.run", "--nnodes=1",
             "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0", "--nproc_per_node=4", *_torchrun_std_workaround(), EXAMPLE, "--tp", "2",
             "--steps", "40"], env=env, name="torchrun")
        try:
            rc = p.wait(180)
        except Exception:
            p.kill()
            raise
        assert rc == 0, p.output() + d.output()
    _check_lines(p.lines, 4, 2)
