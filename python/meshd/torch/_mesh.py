"""meshd.torch.init_device_mesh: a mesh whose spec meshd checked across every rank, with real
torch process groups.

* The spec is checked first, through meshd (``client.init_device_mesh(..., nccl_ids=False)``):
  ranks that ask for different meshes all get ``meshd.FailedPrecondition`` naming both specs, at
  once, where torch would hang in the first collective or new_group.
* On a torch with ``torch.distributed.device_mesh`` (2.x) the result is torch's own DeviceMesh,
  built by torch over the same row-major layout and checked group by group against meshd's.
* On torch 1.13 (no DeviceMesh) it is a ``meshd.torch.DeviceMesh``: every meshd.DeviceMesh method,
  plus ``get_group(dim)`` returning a real torch process group. Its groups come from
  ``dist.new_group`` for every group of every dim, in PyTorch's group order, on every rank (1.13
  requires every rank to enter new_group for every group); a group with the same members is built
  once and shared (a slice reuses its root's groups; the whole world is the default group).

Thread-safety: build meshes from one thread per process (new_group is collective); a built mesh
may be read from any thread.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist

import meshd
from meshd.mesh import _dims, _names
from meshd.torch import _rendezvous

try:  # torch >= 2.2
    from torch.distributed.device_mesh import DeviceMesh as _TorchDeviceMesh  # type: ignore
except ImportError:  # torch 1.13
    _TorchDeviceMesh = None

__all__ = ["DeviceMesh", "init_device_mesh", "HAS_TORCH_DEVICE_MESH"]

#: Whether this torch has torch.distributed.device_mesh (init_device_mesh returns torch's mesh).
HAS_TORCH_DEVICE_MESH = _TorchDeviceMesh is not None

_DEFAULT_BACKEND = {"cpu": "gloo", "cuda": "nccl"}


def _default_backend(device_type: str) -> Optional[str]:
    if HAS_TORCH_DEVICE_MESH:
        return None  # torch 2.x picks one per device ("cpu:gloo,cuda:nccl")
    return _DEFAULT_BACKEND.get(device_type.split(":")[0], "gloo")


class _Groups:
    """Process groups by member set, for one default process group (reset when it changes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.world: Any = None
        self.by_members: Dict[Tuple[int, ...], Any] = {}

    def table(self) -> Dict[Tuple[int, ...], Any]:
        world = dist.distributed_c10d._get_default_group()
        if self.world is not world:
            self.world = world
            self.by_members = {tuple(range(dist.get_world_size())): dist.group.WORLD}
        return self.by_members


_groups = _Groups()


def _dim_index(mesh: "meshd.DeviceMesh", dim: Union[int, str, None]) -> Optional[int]:
    """The index of one of ``mesh``'s own dims; None for a flattened dim's name (of its root).
    Bad dims raise meshd's errors, as every meshd.DeviceMesh method does."""
    if isinstance(dim, str) and dim not in (mesh.mesh_dim_names or ()):
        mesh.size(dim)  # InvalidArgument naming the valid names, unless a flattened dim's
        return None
    index = mesh._arg(dim, "mesh_dim")  # None: 0 on a 1-d mesh, else InvalidArgument
    if isinstance(index, str):
        return list(mesh.mesh_dim_names or ()).index(index)
    mesh.size(index)  # InvalidArgument for an index out of range
    return index % mesh.ndim


class DeviceMesh:
    """A meshd.DeviceMesh with torch process groups (what torch 2.x's DeviceMesh offers, for torch
    without ``torch.distributed.device_mesh``).

    Every meshd.DeviceMesh attribute is here too (``shape``, ``ndim``, ``size``,
    ``get_coordinate``, ``get_group_ranks``, ``get_all_groups_ranks``, ``nccl_unique_ids``, ...);
    slicing (``mesh["dp"]``), ``_flatten``, ``_unflatten`` and ``_concatenate`` return
    ``meshd.torch.DeviceMesh`` objects with their groups. Like torch's, deriving a mesh that needs
    new groups (``_flatten`` of several dims, ``_unflatten``) is collective: every rank of the
    world must do it, in the same order.
    """

    def __init__(self, device_type: str, mesh: "meshd.DeviceMesh") -> None:
        if isinstance(mesh, DeviceMesh):
            mesh = mesh.meshd_mesh
        if not dist.is_initialized():
            raise RuntimeError("meshd.torch.DeviceMesh needs the default process group: "
                               "dist.init_process_group(backend, init_method='meshd://') first")
        self.device_type = device_type
        self._mesh = mesh
        self._dim_groups = [self._make_groups(d) for d in range(mesh.ndim)]

    def _make_groups(self, dim: int) -> Any:
        with _groups.lock:
            table = _groups.table()
            for ranks in self._mesh.get_all_groups_ranks(dim):
                key = tuple(sorted(int(r) for r in ranks))
                if key not in table:
                    # Every rank enters new_group for every group, in the same order (torch 1.13's
                    # rule); non-members get GroupMember.NON_GROUP_MEMBER.
                    table[key] = dist.new_group(ranks=list(key))
            mine = tuple(sorted(int(r) for r in self._mesh.get_group_ranks(dim)))
            return table[mine]

    # ---- torch's DeviceMesh API ---------------------------------------------------------------

    @property
    def meshd_mesh(self) -> "meshd.DeviceMesh":
        """The meshd.DeviceMesh underneath."""
        return self._mesh

    @property
    def mesh(self) -> torch.Tensor:
        """This rank's view of the mesh as an int tensor of ``shape`` (torch's ``mesh.mesh``)."""
        return torch.as_tensor(self._mesh.mesh, dtype=torch.int).reshape(tuple(self._mesh.shape))

    @property
    def mesh_dim_names(self) -> Optional[Tuple[str, ...]]:
        names = self._mesh.mesh_dim_names
        return tuple(names) if names else None

    def get_group(self, mesh_dim: Union[int, str, None] = None) -> Any:
        """The torch process group of this rank along ``mesh_dim`` (an index, a name, or the name
        of a dim flattened from this mesh's root with ``_flatten``; may be omitted on a 1-d
        mesh)."""
        index = _dim_index(self._mesh, mesh_dim)
        if index is not None:
            return self._dim_groups[index]
        # A flattened dim: its groups were made when it was flattened (collectively).
        members = tuple(sorted(int(r) for r in self._mesh.get_group_ranks(mesh_dim)))
        with _groups.lock:
            group = _groups.table().get(members)
        if group is None:
            raise meshd.FailedPrecondition(
                f"no torch process group for the flattened dim '{mesh_dim}': it was flattened "
                "outside meshd.torch (flatten with this mesh's _flatten, on every rank)")
        return group

    def get_all_groups(self) -> List[Any]:
        """This rank's process group along every dim."""
        return list(self._dim_groups)

    def get_local_rank(self, mesh_dim: Union[int, str, None] = None) -> int:
        """This rank's rank in its group along ``mesh_dim`` (c10d's group rank: sorted members)."""
        return int(self._mesh.get_local_rank(mesh_dim))

    def __getitem__(self, names: Union[str, Sequence[str]]) -> "DeviceMesh":
        return DeviceMesh(self.device_type, self._mesh[names])

    def _get_root_mesh(self) -> "DeviceMesh":
        """The mesh this one was sliced, flattened or unflattened from (or this one), with its
        groups (those made when the root was built; a root never built as a meshd.torch mesh
        gets its groups now, collectively, as when it is built)."""
        return DeviceMesh(self.device_type, self._mesh._get_root_mesh())

    def _flatten(self, *args: Any, **kwargs: Any) -> "DeviceMesh":
        return DeviceMesh(self.device_type, self._mesh._flatten(*args, **kwargs))

    def _unflatten(self, *args: Any, **kwargs: Any) -> "DeviceMesh":
        return DeviceMesh(self.device_type, self._mesh._unflatten(*args, **kwargs))

    @staticmethod
    def _concatenate(meshes: Sequence["DeviceMesh"]) -> "DeviceMesh":
        meshes = list(meshes)
        if not meshes:
            raise ValueError("_concatenate needs at least one mesh")
        inner = [m.meshd_mesh if isinstance(m, DeviceMesh) else m for m in meshes]
        device_type = next((m.device_type for m in meshes if isinstance(m, DeviceMesh)), "cpu")
        return DeviceMesh(device_type, type(inner[0])._concatenate(inner))

    def __getattr__(self, name: str) -> Any:
        # Everything else is meshd.DeviceMesh's (shape, ndim, size, get_coordinate, get_rank,
        # get_group_ranks, get_all_groups_ranks, nccl_unique_ids, groups, ...).
        if name.startswith("__") or name in ("_mesh", "_dim_groups", "device_type"):
            raise AttributeError(name)
        return getattr(self._mesh, name)

    def __len__(self) -> int:
        return int(self._mesh.size())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceMesh):
            return NotImplemented
        return self.device_type == other.device_type and self._mesh == other._mesh

    def __hash__(self) -> int:
        return hash((self.device_type, tuple(self._mesh.shape), self.mesh_dim_names))

    def __repr__(self) -> str:
        return f"meshd.torch.DeviceMesh({self.device_type!r}, {self._mesh!r})"


def _check_torch_mesh(tmesh: Any, mesh: "meshd.DeviceMesh") -> None:
    """Torch's groups must be meshd's, dim by dim (the same row-major layout)."""
    view = [int(r) for r in torch.as_tensor(mesh.mesh).flatten().tolist()]
    tview = [int(r) for r in tmesh.mesh.flatten().tolist()]
    if view != tview:
        raise RuntimeError(f"torch's DeviceMesh {tview} differs from meshd's {view}")
    for d in range(mesh.ndim):
        want = sorted(int(r) for r in mesh.get_group_ranks(d))
        got = sorted(dist.get_process_group_ranks(tmesh.get_group(d)))
        if want != got:
            raise RuntimeError(f"torch's group along dim {d} is {got}, meshd's is {want}")


def init_device_mesh(device_type: str, mesh_shape: Sequence[int],
                     mesh_dim_names: Optional[Sequence[str]] = None, *,
                     mesh_name: Optional[str] = None, backend: Optional[str] = None,
                     **torch_kwargs: Any) -> Any:
    """torch's ``init_device_mesh``, with the spec checked across every rank by meshd first.

    Args:
        device_type: "cpu", "cuda", ...
        mesh_shape: the mesh's shape; its product is the job's world size.
        mesh_dim_names: one name per dim (optional).
        mesh_name: meshd's name for the mesh (several meshes of one job are told apart by it;
            default: the n-th unnamed mesh).
        backend: for the default process group when it is not initialised yet (initialised with
            ``init_method="meshd://"``); default gloo for cpu, nccl for cuda (1.13), torch's
            choice on 2.x.
        torch_kwargs: passed to torch's DeviceMesh on 2.x (e.g. ``backend_override``).

    Returns:
        torch's ``DeviceMesh`` on torch 2.x; a ``meshd.torch.DeviceMesh`` on 1.13.

    Raises:
        meshd.FailedPrecondition: ranks asked for different meshes (on every rank, naming both).
        meshd.InvalidArgument: a bad shape or names (e.g. not the world size).
        RuntimeError: the default process group's ranks are not meshd's (initialised by other
            means than ``meshd://``).
    """
    shape = _dims(mesh_shape)
    names = _names(mesh_dim_names) or None
    c = _rendezvous.attached() or _rendezvous.attach()
    mesh = c.init_device_mesh(shape, names, mesh_name, nccl_ids=False)
    if not dist.is_initialized():
        dist.init_process_group(backend if backend is not None else _default_backend(device_type),
                                init_method="meshd://")
    if dist.get_rank() != c.rank or dist.get_world_size() != c.world_size:
        raise RuntimeError(
            f"the default process group has rank {dist.get_rank()} of {dist.get_world_size()}, "
            f"but meshd assigned rank {c.rank} of {c.world_size}: initialise it with "
            "init_method='meshd://' (or let meshd.torch.init_device_mesh do it)")
    if torch_kwargs and not HAS_TORCH_DEVICE_MESH:
        raise TypeError(f"torch {torch.__version__} has no DeviceMesh to take "
                        f"{', '.join(torch_kwargs)}")
    if HAS_TORCH_DEVICE_MESH:
        ranks = torch.as_tensor(mesh.mesh, dtype=torch.int).reshape(shape)
        tmesh = _TorchDeviceMesh(device_type, ranks,
                                 mesh_dim_names=tuple(names) if names else None, **torch_kwargs)
        _check_torch_mesh(tmesh, mesh)
        return tmesh
    return DeviceMesh(device_type, mesh)
