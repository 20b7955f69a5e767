"""init_process_group(init_method="meshd://") with real PyTorch processes.

* A coordinator and 2 agents x 4 simulated GPUs, 8 worker processes: gloo over meshd's store and
  ranks; an all-reduce on the world, then on every group of every dim of a 2x2x2 mesh and of its
  first two dims flattened, each sum checked against the groups the row-major layout implies
  (computed here, not by meshd).
* In this process (a one-rank job): the URL's parameters, rank/world_size given to torch checked
  against meshd's, init again after destroy_process_group.
"""

from __future__ import annotations

import datetime
import importlib
import itertools
import math
import subprocess
import time

import pytest

import meshd_cluster
from torch_support import WORKER, import_torch, parse_tagged

torch, mt = import_torch()
import torch.distributed as dist  # noqa: E402

import meshd  # noqa: E402

SHAPE = (2, 2, 2)
NAMES = ("dp", "cp", "tp")


def _row_major_groups(shape, dim):
    """Every group along ``dim`` of arange(prod(shape)).reshape(shape), as sets."""
    strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]
    groups = {}
    for coord in itertools.product(*(range(s) for s in shape)):
        rank = sum(c * s for c, s in zip(coord, strides))
        others = coord[:dim] + coord[dim + 1:]
        groups.setdefault(others, set()).add(rank)
    return list(groups.values())


def test_eight_workers_allreduce_world_and_every_mesh_group():
    t0 = time.monotonic()
    with meshd_cluster.cluster(nodes=2, gpus=4) as c:
        results = meshd_cluster.run_workers(
            c.sockets, "torch-allreduce", 4, script=WORKER,
            args=["allreduce", ",".join(map(str, SHAPE)), ",".join(NAMES)], timeout=150)
        meshd_cluster.assert_all_ok(results, c.output())
    got = parse_tagged(results, "RESULT")
    world = 8
    assert sorted(r["rank"] for r in got) == list(range(world))
    every = float(sum(2 ** r for r in range(world)))
    for worker, r in zip(results, got):
        # meshd's rank: nodes in topology order, then local rank.
        assert r["world"] == world and r["local_world"] == 4
        assert r["rank"] == r["node"] * 4 + r["local_rank"] == worker.node * 4 + worker.local_rank
        assert r["world_sum"] == every
        assert r["mesh_type"] in ("meshd.torch._mesh.DeviceMesh",
                                  "torch.distributed.device_mesh.DeviceMesh")
        coord = [r["rank"] // 4, (r["rank"] // 2) % 2, r["rank"] % 2]
        assert r["coordinate"] == coord
        for d, name in enumerate(NAMES):
            mine = [g for g in _row_major_groups(SHAPE, d) if r["rank"] in g]
            assert len(mine) == 1
            members = sorted(mine[0])
            info = r["dims"][name]
            assert info["group_ranks"] == members, (name, r)
            assert sorted(info["meshd_ranks"]) == members
            assert info["sum"] == float(sum(2 ** q for q in members)), (name, r)
            assert info["group_rank"] == info["local_rank"] == members.index(r["rank"])
        # dp and cp flattened: the ranks that share the tp coordinate
        flat = r["dims"]["dp_cp"]
        members = [q for q in range(world) if q % 2 == r["rank"] % 2]
        assert flat["group_ranks"] == members, r
        assert flat["sum"] == float(sum(2 ** q for q in members)), r
        assert flat["local_rank"] == members.index(r["rank"]), r
    print(f"8 workers: init {max(r['init_s'] for r in got):.2f}s, mesh + groups "
          f"{max(r['mesh_s'] for r in got):.2f}s, whole test {time.monotonic() - t0:.1f}s")


# ---- one rank, in this process ------------------------------------------------------------------


def test_parse_url():
    args, rank, world = mt.parse_url("meshd://")
    assert (args, rank, world) == ({"socket": None}, None, None)
    args, rank, world = mt.parse_url(
        "meshd:///run/meshd/a%20b.sock?job=train&nnodes=2:4&local_rank=3&local_world=8"
        "&abort_on_generation_end=true&rank=11&world_size=16")
    assert args == {"socket": "/run/meshd/a b.sock", "job": "train", "nnodes": "2:4",
                    "local_rank": 3, "local_world": 8, "abort_on_generation_end": True}
    assert (rank, world) == (11, 16)
    # torch adds world_size=-1 when it was not given (_create_store_from_options)
    assert mt.parse_url("meshd://?nnodes=2&world_size=-1") == ({"socket": None, "nnodes": 2},
                                                               None, None)
    with pytest.raises(ValueError, match="unknown parameter 'jobs'"):
        mt.parse_url("meshd://?jobs=x")
    with pytest.raises(ValueError, match="three slashes"):
        mt.parse_url("meshd://tmp/agent.sock")
    with pytest.raises(ValueError, match="no value"):
        mt.parse_url("meshd://?job")
    with pytest.raises(ValueError, match="local_rank"):
        mt.parse_url("meshd://?local_rank=x")
    with pytest.raises(ValueError, match="abort_on_generation_end"):
        mt.parse_url("meshd://?abort_on_generation_end=maybe")
    with pytest.raises(ValueError, match="'job' is given twice"):
        mt.parse_url("meshd://?job=a&nnodes=1&job=b")


def test_import_meshd_alone_does_not_import_torch():
    code = ("import sys, meshd; assert 'torch' not in sys.modules, 'torch imported'; "
            "import meshd.torch; assert 'torch' in sys.modules")
    env = meshd_cluster.worker_env(None, None, None, None, None)
    subprocess.run([meshd_cluster.python_bin(), "-c", code], env=env, check=True, timeout=60)


def test_handler_is_registered():
    rdzv = importlib.import_module("torch.distributed.rendezvous")

    assert rdzv._rendezvous_handlers["meshd"] is mt.rendezvous_handler


@pytest.fixture()
def daemon():
    with meshd_cluster.standalone(gpus=1) as d:
        try:
            yield d
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
            mt.detach()


def _url(d, job="rdzv-one", **extra):
    q = "&".join([f"job={job}", "nnodes=1", "local_rank=0", "local_world=1"] +
                 [f"{k}={v}" for k, v in extra.items()])
    return f"meshd://{d.socket}?{q}"


def test_init_process_group_one_rank(daemon):
    dist.init_process_group("gloo", init_method=_url(daemon),
                            timeout=datetime.timedelta(seconds=30))
    assert (dist.get_rank(), dist.get_world_size()) == (0, 1)
    c = mt.client()
    assert (c.rank, c.world_size) == (0, 1)
    t = torch.ones(2)
    dist.all_reduce(t)
    assert t.tolist() == [1.0, 1.0]
    # torch's own keys live in meshd's store, under its "default_pg" prefix
    s = mt.Store(c)
    assert s.num_keys() > 0


def test_rank_and_world_size_given_to_torch_are_checked(daemon):
    with pytest.raises(ValueError, match=r"world_size=4, but meshd's job has 1 ranks"):
        dist.init_process_group("gloo", init_method=_url(daemon), rank=0, world_size=4,
                                timeout=datetime.timedelta(seconds=30))
    with pytest.raises(ValueError, match=r"rank=3, but meshd assigned this process rank 0"):
        dist.init_process_group("gloo", init_method=_url(daemon), rank=3, world_size=1,
                                timeout=datetime.timedelta(seconds=30))
    # the right ones pass
    dist.init_process_group("gloo", init_method=_url(daemon), rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))
    assert dist.get_rank() == 0


def test_init_again_after_destroy(daemon):
    # torch restarts its group counter on destroy_process_group, so the second default group's
    # barrier keys would meet the first's in the same store: each init gets a fresh keyspace.
    for _ in range(3):
        dist.init_process_group("gloo", init_method=_url(daemon),
                                timeout=datetime.timedelta(seconds=30))
        g = dist.new_group([0])
        t = torch.ones(1)
        dist.all_reduce(t, group=g)
        dist.all_reduce(t)
        assert t.item() == 1.0
        dist.destroy_process_group()


def test_attach_twice_with_other_arguments_is_refused(daemon):
    dist.init_process_group("gloo", init_method=_url(daemon),
                            timeout=datetime.timedelta(seconds=30))
    with pytest.raises(ValueError, match="attached already"):
        mt.attach(job="another-job")
    with pytest.raises(ValueError, match="socket='/elsewhere.sock'"):
        mt.attach(socket="/elsewhere.sock")
    # what is not named, or named the same, reuses the client
    assert mt.attach() is mt.client()
    assert mt.attach(socket=daemon.socket, job="rdzv-one", nnodes="1:1") is mt.client()
    assert mt.attach(nnodes=(1, 1)) is mt.client()  # every spelling of one node count
    assert mt.attach("rdzv-one") is mt.client()  # meshd.attach's order: the job first


def test_init_device_mesh_one_rank_initialises_the_default_group(daemon):
    mt.attach(socket=daemon.socket, job="rdzv-mesh", nnodes=1, local_rank=0, local_world=1,
              timeout=30)
    assert not dist.is_initialized()
    mesh = mt.init_device_mesh("cpu", (1, 1), ("dp", "tp"))
    assert dist.is_initialized() and dist.get_world_size() == 1
    assert mesh.get_group("dp") is not None and mesh.get_group("tp") is not None
    with pytest.raises(RuntimeError, match="mesh_dim"):
        mesh.get_group()
    with pytest.raises(meshd.InvalidArgument):
        mt.init_device_mesh("cpu", (2, 1), ("dp", "tp"))  # not the world size
    # Flattened dims name groups too, as on torch 2.x; bad dims are meshd's errors.
    flat = mesh["dp", "tp"]._flatten()
    assert flat.mesh_dim_names == ("dp_tp",)
    assert mesh.get_group("dp_tp") is flat.get_group("dp_tp")
    assert mesh.get_local_rank("dp_tp") == 0
    assert mesh.size("dp_tp") == 1
    root = mesh["tp"]._get_root_mesh()
    assert isinstance(root, mt.DeviceMesh) and root == mesh
    assert root.get_group("dp") is mesh.get_group("dp")
    for bad in ("pp", 2, -3):
        with pytest.raises(meshd.InvalidArgument):
            mesh.get_group(bad)
        with pytest.raises(meshd.InvalidArgument):
            mesh.get_local_rank(bad)
    assert mesh.get_group(-1) is mesh.get_group("tp")
