"""``meshd.DeviceMesh`` and ``meshd.Group``: PyTorch's DeviceMesh, computed by libmeshd_client.

The maths (slicing, flattening, groups, coordinates) is the C++ ``meshd::DeviceMesh``, which never
needs the network; only :meth:`DeviceMesh.nccl_unique_ids` and :meth:`DeviceMesh.groups` ask meshd
(once per mesh, batched). Names follow PyTorch's. A ``dim`` argument is an index (negative counts
from the end, as in PyTorch), a dim's name, or the name of a flattened dim of the mesh's root (from
any mesh of that root, as PyTorch's ``get_group``/``get_local_rank`` take it); ``None`` means the
only dim of a 1-D mesh. A bad dim raises :class:`meshd.InvalidArgument` naming the valid ones.

Meshes come from :meth:`meshd.Client.init_device_mesh`, or — for the maths alone, with no daemon —
from :meth:`DeviceMesh.from_rank_table` (PyTorch's ``DeviceMesh(device_type, mesh=...)``: any rank
order, any subset of the world).

Thread-safety: a DeviceMesh is an immutable value; share it freely.
"""

from __future__ import annotations

import dataclasses
import operator
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

    def _to_core(self) -> Tuple[Any, ...]:
        return (list(self.dims), list(self.ranks), self.index, self.group_rank, self.group_index,
                self.key, [bytes(i) for i in self.ids])


def _dims(shape: Any, what: str = "a mesh shape") -> List[int]:
    """Sizes, as PyTorch takes them: an int, or a sequence of ints (a list, a tuple, a
    torch.Size, a tensor or an array: its ``tolist()``); no float or bool is taken for one."""
    if hasattr(shape, "tolist"):
        shape = shape.tolist()  # a tensor or array (0-d: one int)
    sizes = [shape] if not isinstance(shape, (list, tuple)) else list(shape)
    try:
        if any(isinstance(s, bool) for s in sizes):
            raise TypeError
        return [operator.index(s) for s in sizes]
    except TypeError:
        raise TypeError(f"{what} is an int or a sequence of ints, not {shape!r}") from None


def _names(mesh_dim_names: Optional[Sequence[str]]) -> List[str]:
    if mesh_dim_names is None:
        return []
    if isinstance(mesh_dim_names, (str, bytes)):
        raise TypeError(f"mesh_dim_names is a sequence of names, one per dim, not the single "
                        f"string {mesh_dim_names!r} (write ({mesh_dim_names!r},) for one dim)")
    names = list(mesh_dim_names)
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"a mesh dim name is a str, not {n!r}")
    return names


def _nest(values: Sequence[int], shape: Sequence[int]) -> List[Any]:
    """Row-major ``values`` as nested lists of ``shape``."""
    if len(shape) == 1:
        return list(values)
    step = len(values) // shape[0] if shape[0] else 0
    return [_nest(values[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _table(mesh: Any) -> Tuple[List[int], List[int]]:
    """(shape, row-major ranks) of a nested list of ranks; InvalidArgument when it is ragged or
    empty, TypeError for something that is not an int."""
    shape: List[int] = []
    level: List[Any] = [mesh]
    while level and isinstance(level[0], (list, tuple)):
        n = len(level[0])
        for row in level:
            if not isinstance(row, (list, tuple)):
                raise InvalidArgument(f"mesh {mesh!r} mixes lists and ranks at one depth")
            if len(row) != n:
                raise InvalidArgument(f"mesh {mesh!r} is ragged: a list of {len(row)} where "
                                      f"{n} are expected")
        if n == 0:
            raise InvalidArgument(f"mesh {mesh!r} holds an empty list")
        shape.append(n)
        level = [x for row in level for x in row]
    if not shape:
        raise InvalidArgument(f"mesh must be a nested list of ranks, e.g. [[0, 2], [1, 3]], not "
                              f"{mesh!r}")
    for x in level:
        if isinstance(x, (list, tuple)):
            raise InvalidArgument(f"mesh {mesh!r} mixes lists and ranks at one depth")
        if isinstance(x, bool) or not isinstance(x, int):
            raise TypeError(f"a rank must be an int, not {type(x).__name__}")
    return shape, [int(x) for x in level]


class DeviceMesh:
    """A device mesh as this rank sees it, with PyTorch's ``DeviceMesh`` API.

    Made by :meth:`meshd.Client.init_device_mesh` (or :meth:`from_rank_table`, for the maths
    alone) and derived from it by ``mesh["dp", "tp"]``, :meth:`_flatten`, :meth:`_unflatten` and
    :meth:`_concatenate`, exactly as in PyTorch. Equal meshes (``==``: the same layout over the
    same ranks with the same names, whichever rank's view) hash equal. Errors are those of the
    C++ mesh maths: :class:`meshd.InvalidArgument` (bad names, sizes or dims) and
    :class:`meshd.FailedPrecondition` (e.g. this rank is not in the mesh).
    """

    __slots__ = ("_m", "_client")

    def __init__(self, core: _core._DeviceMesh, client: Optional["Client"] = None) -> None:
        """Wraps a ``_core._DeviceMesh``; use :meth:`meshd.Client.init_device_mesh` instead."""
        self._m = core
        self._client = client

    # -- what it is --------------------------------------------------------------------------

    @property
    def client(self) -> Optional["Client"]:
        """The client it was made by (whose rank this view is for); None for a mesh made by
        :meth:`from_rank_table`."""
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

    def _arg(self, dim: Optional[Dim], what: str = "dim") -> Dim:
        """``dim`` as the C++ calls take it (None only for a 1-D mesh, as in PyTorch)."""
        if dim is None:
            if self._m.ndim != 1:
                raise InvalidArgument(
                    f"{self._m.to_string()} has {self._m.ndim} dims: pass {what} (an index or a "
                    f"name)")
            return 0
        if isinstance(dim, bool) or not isinstance(dim, (int, str)):
            raise TypeError(f"a dim must be an int or a str, not {type(dim).__name__}")
        if isinstance(dim, int) and not -2**31 <= dim < 2**31:
            # Past a C int: the C++ message for an out-of-range index, with this index in it.
            try:
                self._m.size(self._m.ndim)
            except InvalidArgument as e:
                raise InvalidArgument(str(e).replace(f"dim {self._m.ndim} ", f"dim {dim} ", 1)) \
                    from None
        return dim

    def size(self, dim: Optional[Dim] = None) -> int:
        """The number of ranks in the mesh, or along ``dim`` (PyTorch's ``size(mesh_dim)``; a
        name or a flattened name is accepted too)."""
        if dim is None:
            return self._m.size()
        return self._m.size(self._arg(dim))

    def get_coordinate(self) -> Optional[List[int]]:
        """This rank's coordinate in the mesh; None when it is not in it."""
        c = self._m.coordinate()
        return None if c is None else list(c)

    def get_local_rank(self, dim: Optional[Dim] = None) -> int:
        """This rank's index in its group along ``dim`` (sorted members: c10d's group rank).

        ``dim`` may be None only for a 1-D mesh (as in PyTorch). Raises
        :class:`meshd.FailedPrecondition` when this rank is not in the mesh."""
        return self._m.local_rank(self._arg(dim))

    def get_rank(self) -> int:
        """This process's global rank (PyTorch's ``DeviceMesh.get_rank``): the rank this view of
        the mesh is for."""
        return self._m.rank

    def get_group_ranks(self, dim: Optional[Dim] = None) -> List[int]:
        """The members of this rank's group along ``dim``, in mesh order."""
        return list(self._m.group_ranks(self._arg(dim)))

    def get_all_groups_ranks(self, dim: Optional[Dim] = None) -> List[List[int]]:
        """Every group along ``dim`` (each in mesh order), in PyTorch's order. O(world)."""
        return [list(g) for g in self._m.all_group_ranks(self._arg(dim))]

    def _get_root_mesh(self) -> "DeviceMesh":
        """PyTorch's ``_get_root_mesh()``: the mesh this one was sliced, flattened, unflattened or
        (first of) concatenated from, or this mesh itself; the same rank's view."""
        return DeviceMesh(self._m.root(), self._client)

    def _get_root_mesh_dim(self) -> Optional[int]:
        """PyTorch's ``_get_root_mesh_dim()``: the index in the root mesh of this 1-D mesh's dim;
        None for a mesh without names. Raises :class:`meshd.InvalidArgument` when this mesh is
        not 1-D or its dim is not one of the root's (a flattened dim, say)."""
        names = self._m.names
        if names is None:
            return None
        if len(names) != 1:
            raise InvalidArgument(f"{self._m.to_string()} is not 1-D: it has no one root dim")
        return self._m.root().dim_index(names[0])

    @classmethod
    def from_rank_table(cls, mesh: Any, mesh_dim_names: Optional[Sequence[str]] = None, *,
                        rank: int, world_size: int) -> "DeviceMesh":
        """PyTorch's ``DeviceMesh(device_type, mesh, mesh_dim_names=...)`` as ``rank`` of a world
        of ``world_size`` ranks sees it, for the maths alone: no daemon, no client, no NCCL ids.

        ``mesh`` is a nested list of ranks (or a tensor: its ``tolist()``) in any order, over any
        subset of the world, e.g. ``[[0, 2], [1, 3]]`` or ``[[4, 5], [6, 7]]``. Raises
        :class:`meshd.InvalidArgument` for a ragged or empty table, a rank outside the world or
        repeated, bad names, or ``rank`` outside the world; TypeError for a non-integer."""
        if hasattr(mesh, "tolist"):
            mesh = mesh.tolist()
        shape, ranks = _table(mesh)
        return cls(_core._DeviceMesh.from_rank_table(shape, ranks, _names(mesh_dim_names),
                                                     operator.index(rank),
                                                     operator.index(world_size)))

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
        return DeviceMesh(self._m.unflatten(dim, _dims(sizes, "_unflatten's sizes"),
                                            _names(names)), self._client)

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

        Groups are known by what they are (their root mesh, their dim's layout in it, their
        index), so a view whose groups this rank fetched before (a slice) costs no call; the
        others come in one batched exchange, answered once their leaders minted them, so every
        member of a new group must ask for it (as with PyTorch's new_group). An empty list when
        this rank is not in the mesh."""
        return self._require_client()._groups(self._m)

    def nccl_unique_ids(self, dim: Optional[Dim] = None) -> List[bytes]:
        """The NCCL unique ids (128 bytes each) of this rank's group along ``dim`` (a flattened
        name: the flattened mesh's group): minted by the group's first member and relayed, so
        equal on every member (see :meth:`groups`)."""
        m, d = self._m.resolve_dim(self._arg(dim))
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
        """Consistent with ``==`` (the C++ ``DeviceMesh::Hash``: layout, names and the root's
        ranks, as PyTorch's ``__hash__``; not the rank whose view it is)."""
        return hash(self._m)

    def __repr__(self) -> str:
        """PyTorch's repr, e.g. ``DeviceMesh((dp=2, tp=4), stride=(4, 1))``."""
        return self._m.to_string()

    __str__ = __repr__
