"""``meshd.DeviceMesh`` and ``meshd.Group``: PyTorch's DeviceMesh, computed by libmeshd_client.

The maths (slicing, flattening, groups, coordinates) is the C++ ``meshd::DeviceMesh``, which never
needs the network; only :meth:`DeviceMesh.nccl_unique_ids` and :meth:`DeviceMesh.groups` ask meshd
(once per mesh, batched). Names follow PyTorch's. A ``dim`` argument is an index (negative counts
from the end, as in PyTorch) or a dim's name (a flattened name too, on the root mesh); ``None``
means the only dim of a 1-D mesh.

Thread-safety: a DeviceMesh is an immutable value; share it freely.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

from meshd import _core
from meshd.errors import InvalidArgument

if TYPE_CHECKING:
    from meshd.client import Client

__all__ = ["DeviceMesh", "Group", "Dim"]

#: A dim of a mesh: an index (negative counts from the end) or a name.
Dim = Union[int, str]


@dataclasses.dataclass(frozen=True)
class Group:
    """One process group of a mesh that this rank belongs to (``meshd::Group``)."""

    #: The dims it spans: ``["tp"]``, or a flattened ``["dp_cp"]``.
    dims: List[str]
    #: Its members, in mesh order.
    ranks: List[int]
    #: This rank's position in ``ranks`` (its coordinate along the dims).
    index: int
    #: This rank's index among the sorted members (c10d's group rank).
    group_rank: int
    #: Which group of the dims it is, in PyTorch's order.
    group_index: int
    #: The same on every member: ``"<mesh key>/<dims>/<group index>"``.
    key: str
    #: The group's NCCL unique ids (128 bytes each; one unless MESHD_RANKS_PER_ID splits it),
    #: minted by its first member and relayed to all: equal on every member.
    ids: List[bytes]

    @classmethod
    def _from_core(cls, t: Tuple[Any, ...]) -> "Group":
        dims, ranks, index, group_rank, group_index, key, ids = t
        return cls(list(dims), list(ranks), index, group_rank, group_index, key, list(ids))


def _nest(values: Sequence[int], shape: Sequence[int]) -> List[Any]:
    """Row-major ``values`` as nested lists of ``shape``."""
    if len(shape) == 1:
        return list(values)
    step = len(values) // shape[0] if shape[0] else 0
    return [_nest(values[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


class DeviceMesh:
    """A device mesh as this rank sees it, with PyTorch's ``DeviceMesh`` API.

    Made by :meth:`meshd.Client.init_device_mesh` and derived from it by ``mesh["dp", "tp"]``,
    :meth:`_flatten`, :meth:`_unflatten` and :meth:`_concatenate`, exactly as in PyTorch. Errors
    are those of the C++ mesh maths: :class:`meshd.InvalidArgument` (bad names, sizes or dims)
    and :class:`meshd.FailedPrecondition` (e.g. this rank is not in the mesh).
    """

    __slots__ = ("_m", "_client")

    def __init__(self, core: _core._DeviceMesh, client: Optional["Client"] = None) -> None:
        """Wraps a ``_core._DeviceMesh``; use :meth:`meshd.Client.init_device_mesh` instead."""
        self._m = core
        self._client = client

    # -- what it is --------------------------------------------------------------------------

    @property
    def client(self) -> Optional["Client"]:
        """The client it was made by (whose rank this view is for)."""
        return self._client

    @property
    def mesh(self) -> Any:
        """PyTorch's ``mesh.mesh``: the copy of this mesh that this rank belongs to, as nested
        lists of ranks in ``shape`` — a ``torch.Tensor`` (dtype ``torch.int``) when torch is
        imported. Raises :class:`meshd.FailedPrecondition` when the mesh has several copies
        and this rank is in none."""
        nested = _nest(self._m.view(), self._m.shape)
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "tensor"):
            return torch.tensor(nested, dtype=torch.int)
        return nested

    @property
    def mesh_dim_names(self) -> Optional[Tuple[str, ...]]:
        """The dims' names, or None for an unnamed mesh."""
        names = self._m.names
        return None if names is None else tuple(names)

    @property
    def shape(self) -> Tuple[int, ...]:
        """The size of every dim."""
        return tuple(self._m.shape)

    @property
    def ndim(self) -> int:
        """The number of dims."""
        return self._m.ndim

    @property
    def key(self) -> str:
        """The key its groups are registered under: the mesh name (``"#<n>"`` for the n-th
        unnamed mesh), plus how it was derived for a derived mesh."""
        return self._m.key

    def _dim(self, dim: Optional[Dim], what: str = "dim") -> int:
        """The index of ``dim`` in this mesh (C++ DimIndex; None only for a 1-D mesh)."""
        if dim is None:
            if self._m.ndim != 1:
                raise InvalidArgument(
                    f"{self._m.to_string()} has {self._m.ndim} dims: pass {what} (an index or a "
                    f"name)")
            return 0
        if isinstance(dim, bool) or not isinstance(dim, (int, str)):
            raise TypeError(f"a dim must be an int or a str, not {type(dim).__name__}")
        return self._m.dim_index(dim)

    def _resolve(self, dim: Optional[Dim]) -> Tuple[_core._DeviceMesh, int]:
        """(mesh, index) of ``dim``. A flattened name on the root (``"dp_tp"`` after
        ``mesh["dp", "tp"]._flatten()``) is no dim of the root: as in PyTorch it stands for the
        flattened mesh's only dim."""
        if isinstance(dim, str) and dim not in (self._m.names or ()):
            try:
                flat = self._m.slice([dim])
            except InvalidArgument:
                pass  # not a flattened name either: DimIndex says what is valid
            else:
                if flat.ndim == 1 and flat.names == [dim]:
                    return flat, 0
        return self._m, self._dim(dim)

    def size(self, dim: Optional[Dim] = None) -> int:
        """The number of ranks in the mesh, or along ``dim``."""
        if dim is None:
            return self._m.size()
        m, d = self._resolve(dim)
        return m.size(d)

    def get_coordinate(self) -> Optional[List[int]]:
        """This rank's coordinate in the mesh; None when it is not in it."""
        c = self._m.coordinate()
        return None if c is None else list(c)

    def get_local_rank(self, dim: Optional[Dim] = None) -> int:
        """This rank's index in its group along ``dim`` (sorted members: c10d's group rank).

        ``dim`` may be None only for a 1-D mesh (as in PyTorch). Raises
        :class:`meshd.FailedPrecondition` when this rank is not in the mesh."""
        m, d = self._resolve(dim)
        return m.local_rank(d)

    def get_rank(self) -> int:
        """This process's global rank (PyTorch's ``DeviceMesh.get_rank``)."""
        if self._client is None:
            raise InvalidArgument("this DeviceMesh has no client, so no rank")
        return self._client.rank

    def get_group_ranks(self, dim: Optional[Dim] = None) -> List[int]:
        """The members of this rank's group along ``dim``, in mesh order."""
        m, d = self._resolve(dim)
        return list(m.group_ranks(d))

    def get_all_groups_ranks(self, dim: Optional[Dim] = None) -> List[List[int]]:
        """Every group along ``dim`` (each in mesh order), in PyTorch's order. O(world)."""
        m, d = self._resolve(dim)
        return [list(g) for g in m.all_group_ranks(d)]

    # -- derived meshes ----------------------------------------------------------------------

    def __getitem__(self, names: Union[str, Sequence[str]]) -> "DeviceMesh":
        """``mesh["tp"]``, ``mesh["dp", "tp"]``: the sub-mesh of these dims (flattened names
        too), as PyTorch slices."""
        if isinstance(names, str):
            wanted = [names]
        elif isinstance(names, (tuple, list)) and all(isinstance(n, str) for n in names):
            wanted = list(names)
        else:
            raise TypeError(f"index a DeviceMesh with dim names (str or tuple of str), not "
                            f"{names!r}")
        return DeviceMesh(self._m.slice(wanted), self._client)

    def _flatten(self, mesh_dim_name: Optional[str] = None) -> "DeviceMesh":
        """PyTorch's ``_flatten``: one dim over all of this mesh's dims, named ``mesh_dim_name``
        (default: the names joined by "_"); the name is then valid on the root mesh too."""
        return DeviceMesh(self._m.flatten(mesh_dim_name), self._client)

    def _unflatten(self, dim: Dim, sizes: Sequence[int], names: Sequence[str]) -> "DeviceMesh":
        """PyTorch's ``_unflatten``: ``dim`` split into dims of ``sizes`` named ``names``."""
        if isinstance(dim, bool) or not isinstance(dim, (int, str)):
            raise TypeError(f"a dim must be an int or a str, not {type(dim).__name__}")
        if isinstance(dim, int):
            dim = self._m.dim_index(dim)  # negative as in PyTorch
        return DeviceMesh(self._m.unflatten(dim, [int(s) for s in sizes], [str(n) for n in names]),
                          self._client)

    @staticmethod
    def _concatenate(meshes: Sequence["DeviceMesh"]) -> "DeviceMesh":
        """PyTorch's ``DeviceMesh._concatenate``: the sub-meshes of one root side by side."""
        meshes = list(meshes)
        for m in meshes:
            if not isinstance(m, DeviceMesh):
                raise TypeError(f"_concatenate takes DeviceMeshes, not {type(m).__name__}")
        client = meshes[0]._client if meshes else None
        return DeviceMesh(_core._DeviceMesh.concatenate([m._m for m in meshes]), client)

    # -- NCCL ids ----------------------------------------------------------------------------

    def _require_client(self) -> "Client":
        if self._client is None:
            raise InvalidArgument("this DeviceMesh has no client to ask for ids")
        return self._client

    def groups(self) -> List[Group]:
        """This rank's groups of the mesh, one per dim, with their NCCL ids.

        Cached for meshes whose ids were fetched; otherwise one batched exchange, so every rank
        of the job must ask for the same derived meshes in the same order (as with PyTorch's
        new_group). An empty list when this rank is not in the mesh."""
        return self._require_client()._groups(self._m)

    def nccl_unique_ids(self, dim: Optional[Dim] = None) -> List[bytes]:
        """The NCCL unique ids (128 bytes each) of this rank's group along ``dim``: minted by the
        group's first member and relayed, so equal on every member (see :meth:`groups`)."""
        m, d = self._resolve(dim)
        return self._require_client()._group_of(m, d).ids

    # -- value semantics ---------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Same layout over the same ranks with the same names (PyTorch's ``__eq__``), whatever
        the view it was reached through."""
        if not isinstance(other, DeviceMesh):
            return NotImplemented
        return self._m == other._m

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        """Consistent with ``==``."""
        return hash(self._m)

    def __repr__(self) -> str:
        """PyTorch's repr, e.g. ``DeviceMesh((dp=2, tp=4), stride=(4, 1))``."""
        return self._m.to_string()

    __str__ = __repr__
