"""meshd.torch — PyTorch on meshd: rendezvous, store, device mesh and generation end.

``import meshd.torch`` registers the ``meshd://`` rendezvous with torch.distributed, so::

    import torch.distributed as dist
    import meshd.torch

    dist.init_process_group("gloo", init_method="meshd://")     # no MASTER_ADDR, no port
    mesh = meshd.torch.init_device_mesh("cpu", (2, 4), ("dp", "tp"))
    dist.all_reduce(t, group=mesh.get_group("tp"))

works on every rank of a meshd job: meshd's agent answers with the rank (topology-aware), the
world size and the job generation's key-value store (``meshd.torch.Store``, a
``torch.distributed.Store``). URL: ``meshd://[SOCKET_PATH][?job=J&nnodes=N&local_rank=I&
local_world=W&abort_on_generation_end=1]``; what is left out comes from MESHD_SOCKET, MESHD_JOB,
MESHD_NNODES, LOCAL_RANK and LOCAL_WORLD_SIZE (torchrun sets the last two).

What else is here: ``client()`` (the attached ``meshd.Client``), ``attach``/``detach``,
``on_generation_end`` and ``set_abort_on_generation_end`` (what happens when meshd ends the
generation), ``init_device_mesh`` (the spec checked across ranks by meshd before any group is
built) and ``DeviceMesh`` (torch 1.13's stand-in for torch's DeviceMesh). docs/python.md is the
guide. torch is imported here only: ``import meshd`` alone never imports it.
"""

from __future__ import annotations

try:
    import torch
    import torch.distributed as _dist
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(f"meshd.torch needs PyTorch (import torch failed: {e})") from e

if not _dist.is_available():  # pragma: no cover - torch built without distributed
    raise ImportError(f"meshd.torch needs torch.distributed, which this torch "
                      f"({torch.__version__}) was built without")

from meshd.torch._mesh import HAS_TORCH_DEVICE_MESH, DeviceMesh, init_device_mesh
from meshd.torch._rendezvous import (
    GENERATION_END_EXIT_CODE,
    attach,
    attached,
    client,
    detach,
    on_generation_end,
    parse_url,
    rendezvous_handler,
    set_abort_on_generation_end,
)
from meshd.torch._store import Store, StoreTimeoutError

__all__ = [
    "DeviceMesh",
    "GENERATION_END_EXIT_CODE",
    "HAS_TORCH_DEVICE_MESH",
    "Store",
    "StoreTimeoutError",
    "attach",
    "attached",
    "client",
    "detach",
    "init_device_mesh",
    "on_generation_end",
    "parse_url",
    "rendezvous_handler",
    "set_abort_on_generation_end",
]

from meshd.torch import _rendezvous

_rendezvous.register()
