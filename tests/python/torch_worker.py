"""Worker processes for the meshd.torch tests: ``python3 torch_worker.py COMMAND [args]``.

Started by ``meshd_cluster.Workers`` (one per local rank, with MESHD_SOCKET, MESHD_JOB,
LOCAL_RANK, LOCAL_WORLD_SIZE and MESHD_NNODES set). Each command prints its findings as
``TAG {json}`` lines on stdout, which the tests parse; a worker exits non-zero when something it
checks itself is wrong. No sleeps: every wait has a deadline and a condition.

Commands:
  allreduce SHAPE NAMES   init_process_group("gloo", "meshd://"), an all-reduce on the world, then
                          meshd.torch.init_device_mesh and an all-reduce on this rank's group of
                          every dim and of the first two dims flattened. Prints RESULT with the sums (each rank adds 2**rank, so a sum
                          names its group's members).
  mismatch                init_process_group, then every rank but the last asks for a (2, W/2)
                          mesh and the last for (W/2, 2): prints MISMATCH with the error and when
                          the call started and ended (time.time()).
  generation_end          init_process_group; on node 0, local ranks 0-1 wait for meshd's
                          generation-end callback, local ranks 2-3 (meshd://...?
                          abort_on_generation_end=1) block in a gloo recv from a rank of node 1
                          that never sends; node 1's workers wait silently. Prints READY, then
                          ENDED / the exit code 75 of abort_on_generation_end. Workers that do
                          not exit wait until the test kills them (an exiting process would
                          close its gloo sockets and wake its peers without meshd).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import torch
import torch.distributed as dist

import meshd
import meshd.torch

DEADLINE = float(os.environ.get("TORCH_WORKER_DEADLINE", "60"))


def emit(tag: str, **fields) -> None:
    print(f"{tag} {json.dumps(fields, sort_keys=True)}", flush=True)


def cmd_allreduce(args: argparse.Namespace) -> int:
    shape = [int(s) for s in args.shape.split(",")]
    names = args.names.split(",")
    t0 = time.monotonic()
    dist.init_process_group("gloo", init_method="meshd://")
    c = meshd.torch.client()
    rank, world = dist.get_rank(), dist.get_world_size()
    if (rank, world) != (c.rank, c.world_size):
        emit("ERROR", what=f"torch says {rank}/{world}, meshd {c.rank}/{c.world_size}")
        return 1
    t_init = time.monotonic() - t0
    value = float(2 ** rank)  # float64 holds every sum of distinct powers of two below 2**53
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    world_sum = t.item()

    t1 = time.monotonic()
    mesh = meshd.torch.init_device_mesh("cpu", shape, names)
    t_mesh = time.monotonic() - t1
    dims = {}
    for d, name in enumerate(names):
        group = mesh.get_group(name)
        by_index = mesh.get_group(d)
        if group is not by_index:
            emit("ERROR", what=f"get_group({name!r}) is not get_group({d})")
            return 1
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, group=group)
        dims[name] = {
            "sum": t.item(),
            "group_ranks": dist.get_process_group_ranks(group),
            "group_rank": dist.get_rank(group),
            "local_rank": mesh.get_local_rank(name),
            "meshd_ranks": mesh.get_group_ranks(d),
        }
    # A slice reuses its root's groups; a flattened dim gets new ones (every rank builds them).
    if mesh[names[-1]].get_group() is not mesh.get_group(names[-1]):
        emit("ERROR", what=f"mesh[{names[-1]!r}] has another group than the root's dim")
        return 1
    flat = mesh[names[0], names[1]]._flatten()
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, group=flat.get_group())
    flat_name = "_".join(names[:2])
    # The root takes the flattened name too (torch 2.x's rule): the same group, its local rank.
    root = mesh[names[-1]]._get_root_mesh()
    if mesh.get_group(flat_name) is not flat.get_group() or \
            root.get_group(flat_name) is not flat.get_group():
        emit("ERROR", what=f"the root's get_group({flat_name!r}) is not the flattened mesh's")
        return 1
    dims[flat_name] = {"sum": t.item(),
                       "group_ranks": dist.get_process_group_ranks(flat.get_group()),
                       "local_rank": mesh.get_local_rank(flat_name)}
    emit("RESULT", rank=rank, world=world, node=c.node_rank, local_rank=c.local_rank,
         local_world=c.local_world_size, generation=c.generation, world_sum=world_sum,
         coordinate=list(mesh.get_coordinate()), dims=dims, init_s=round(t_init, 3),
         mesh_s=round(t_mesh, 3), mesh_type=type(mesh).__module__ + "." + type(mesh).__name__)
    dist.barrier()
    dist.destroy_process_group()
    return 0


def cmd_mismatch(args: argparse.Namespace) -> int:
    dist.init_process_group("gloo", init_method="meshd://")
    rank, world = dist.get_rank(), dist.get_world_size()
    shape = (2, world // 2) if rank != world - 1 else (world // 2, 2)
    dist.barrier()  # everyone is up: the calls below start together
    start = time.time()
    try:
        meshd.torch.init_device_mesh("cpu", shape, ("dp", "tp"))
    except meshd.FailedPrecondition as e:
        emit("MISMATCH", rank=rank, start=start, end=time.time(), error=str(e),
             type=type(e).__name__, code=e.code, shape=list(shape))
        return 0
    except Exception as e:  # the wrong error
        emit("WRONG", rank=rank, start=start, end=time.time(), error=str(e),
             type=type(e).__name__)
        return 1
    emit("NOERROR", rank=rank, start=start, end=time.time(), shape=list(shape))
    return 1


def cmd_generation_end(args: argparse.Namespace) -> int:
    local_rank = int(os.environ["LOCAL_RANK"])
    ended = threading.Event()
    seen = {}

    def on_end(err: meshd.Error) -> None:
        seen.update(time=time.time(), error=str(err), type=type(err).__name__)
        ended.set()

    meshd.torch.on_generation_end(on_end)
    c = meshd.torch.attach()
    aborting = c.node_rank == 0 and local_rank >= 2
    url = "meshd://?abort_on_generation_end=1" if aborting else "meshd://"
    dist.init_process_group("gloo", init_method=url)
    rank, world = dist.get_rank(), dist.get_world_size()
    peer = (rank + world // 2) % world  # the same local rank on node 1
    role = "abort" if aborting else ("callback" if c.node_rank == 0 else "silent")
    dist.barrier()
    emit("READY", rank=rank, node=c.node_rank, role=role, peer=peer)
    if role == "abort":
        # A collective that only meshd can end: the peer lives but never sends (its node's agent
        # is what dies), so gloo itself sees nothing for its whole timeout.
        t = torch.zeros(1)
        dist.recv(t, src=peer)
        emit("RECEIVED", rank=rank)
        return 1
    if role == "silent":
        # Alive and silent whatever its client hears (its agent dies): exiting would close its
        # gloo connections and let gloo, not meshd, wake the peer. The test kills it.
        threading.Event().wait(DEADLINE)
        return 0
    if not ended.wait(DEADLINE):
        emit("NOEND", rank=rank)
        return 1
    try:
        meshd.torch.client().health()
    except meshd.Aborted as e:
        emit("ENDED", rank=rank, callback_time=seen["time"], callback_error=seen["error"],
             callback_type=seen["type"], health_error=str(e), health_type=type(e).__name__)
        threading.Event().wait(DEADLINE)  # stays up (see "silent"); the test kills it
        return 0
    emit("HEALTHY", rank=rank)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("allreduce")
    p.add_argument("shape")
    p.add_argument("names")
    sub.add_parser("mismatch")
    sub.add_parser("generation_end")
    args = parser.parse_args()
    return {"allreduce": cmd_allreduce, "mismatch": cmd_mismatch,
            "generation_end": cmd_generation_end}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
