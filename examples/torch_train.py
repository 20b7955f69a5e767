#!/usr/bin/env python3
"""Data- and tensor-parallel training of a small MLP on CPU (gloo), with meshd giving the ranks.

Start one process per local rank on every node of a meshd job (or under torchrun); meshd's agent
gives each its rank, the world and the store::

    meshd standalone --listen 127.0.0.1:0 --socket /tmp/meshd.sock --simulate-gpus 4 &
    for r in 0 1 2 3; do
      MESHD_SOCKET=/tmp/meshd.sock MESHD_JOB=train MESHD_NNODES=1 LOCAL_RANK=$r \
        LOCAL_WORLD_SIZE=4 PYTHONPATH=build/python python3 examples/torch_train.py --tp 2 &
    done; wait
    # or: MESHD_SOCKET=... MESHD_JOB=train torchrun --standalone --nproc_per_node=4 \
    #       examples/torch_train.py --tp 2    (Debian's torch 1.13: add --redirects 2 --tee 2)

The world is a 2-D mesh (dp x tp), built by ``meshd.torch.init_device_mesh`` (its spec checked
across every rank by meshd). The model is ``y = W2 relu(W1 x)`` split Megatron-style over the tp
group: W1 by output features (column-parallel), W2 by input features (row-parallel), so the
forward pass all-reduces the partial outputs over tp, and the backward pass all-reduces the input
gradient over tp. Gradients are then averaged over the dp group (data parallelism: each dp rank
trains on its own shard of a synthetic regression set). Every rank prints one line; the program
exits non-zero unless the loss fell and the replicas of every shard agree exactly.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.distributed as dist

import meshd
import meshd.torch


class _CopyToTp(torch.autograd.Function):
    """Identity forward; the input's gradient is the sum over the tp group (Megatron's f)."""

    @staticmethod
    def forward(ctx, x, group):  # type: ignore[override]
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _ReduceFromTp(torch.autograd.Function):
    """Sum over the tp group forward; identity backward (Megatron's g)."""

    @staticmethod
    def forward(ctx, x, group):  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None


class TpMlp(torch.nn.Module):
    """An MLP whose hidden layer is split across the tp group."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, tp_rank: int, tp_size: int,
                 tp_group) -> None:
        super().__init__()
        if d_hidden % tp_size:
            raise ValueError(f"--hidden {d_hidden} is not a multiple of tp={tp_size}")
        # Every rank draws the full weights from one seed and keeps its slice, so the model is the
        # same whatever tp is.
        g = torch.Generator().manual_seed(1234)
        w1 = torch.randn(d_hidden, d_in, generator=g) / d_in ** 0.5
        w2 = torch.randn(d_out, d_hidden, generator=g) / d_hidden ** 0.5
        part = d_hidden // tp_size
        rows = slice(tp_rank * part, (tp_rank + 1) * part)
        self.w1 = torch.nn.Parameter(w1[rows].clone())
        self.w2 = torch.nn.Parameter(w2[:, rows].clone())
        self.tp_group = tp_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _CopyToTp.apply(x, self.tp_group)
        h = torch.relu(x @ self.w1.t())
        return _ReduceFromTp.apply(h @ self.w2.t(), self.tp_group)


def make_data(dp_rank: int, n: int, d_in: int, d_out: int):
    """A synthetic regression set: one true map for all, a different shard per dp rank."""
    g = torch.Generator().manual_seed(7)
    true_w = torch.randn(d_out, d_in, generator=g)
    g.manual_seed(100 + dp_rank)
    x = torch.randn(n, d_in, generator=g)
    y = torch.tanh(x @ true_w.t()) + 0.01 * torch.randn(n, d_out, generator=g)
    return x, y


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tp", type=int, default=2, help="tensor-parallel size (the rest is dp)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="samples per dp rank")
    parser.add_argument("--init-method", default="meshd://",
                        help="a meshd:// URL for init_process_group (default meshd://: the socket, "
                             "job and ranks from the environment)")
    args = parser.parse_args()
    if not args.init_method.startswith("meshd://"):
        parser.error(f"--init-method {args.init_method!r}: this example takes its ranks and mesh "
                     "from meshd, so it needs a meshd:// URL")

    started = time.monotonic()
    dist.init_process_group("gloo", init_method=args.init_method)
    client = meshd.torch.client()
    rank, world = dist.get_rank(), dist.get_world_size()
    if world % args.tp:
        print(f"rank {rank}: world {world} is not a multiple of --tp {args.tp}", file=sys.stderr)
        return 2
    dp = world // args.tp
    mesh = meshd.torch.init_device_mesh("cpu", (dp, args.tp), ("dp", "tp"))
    dp_group, tp_group = mesh.get_group("dp"), mesh.get_group("tp")
    dp_rank, tp_rank = mesh.get_local_rank("dp"), mesh.get_local_rank("tp")

    d_in, d_out = 8, 4
    model = TpMlp(d_in, args.hidden, d_out, tp_rank, args.tp, tp_group)
    x, y = make_data(dp_rank, args.batch, d_in, d_out)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)

    def global_loss() -> float:
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(model(x), y).reshape(1)
        dist.all_reduce(loss, group=dp_group)  # the same on every rank: the mean over dp shards
        return loss.item() / dp

    first = global_loss()
    for _ in range(args.steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        for p in model.parameters():  # data parallelism: average the gradients over dp
            dist.all_reduce(p.grad, group=dp_group)
            p.grad /= dp
        opt.step()
    last = global_loss()

    # Replicas of one tp shard (the same tp rank on every dp rank) must hold identical weights.
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    lo, hi = flat.clone(), flat.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=dp_group)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=dp_group)
    drift = (hi - lo).abs().max().item()

    ok = last < 0.5 * first and drift == 0.0
    coord = tuple(int(c) for c in mesh.get_coordinate())
    print(f"rank {rank}/{world} node {client.node_rank} local {client.local_rank} "
          f"dp {dp_rank}/{dp} tp {tp_rank}/{args.tp} coord {coord}: loss {first:.4f} -> "
          f"{last:.4f} in {args.steps} steps, replica drift {drift:g}, "
          f"{time.monotonic() - started:.1f}s {'ok' if ok else 'FAILED'}", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except meshd.Error as e:
        print(f"torch_train: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
