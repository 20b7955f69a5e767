"""``meshd.attach`` and ``meshd.Client``: a worker's connection to the host's meshd agent.

A thin layer over ``meshd._core`` (libmeshd_client): argument conversion, dataclasses and
docstrings live here; the C++ does the work. Blocking calls release the GIL and, on the main
thread, end with KeyboardInterrupt on Ctrl-C (see python/src/core.cc): the interrupt cancels every
call of that client in flight at that moment, on any thread (those raise meshd.Cancelled).

Thread-safety: every method may be called from any thread.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import operator
import os
import weakref
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from meshd import _core
from meshd.errors import Error, InvalidArgument
from meshd.mesh import DeviceMesh, Group, _dims, _names, _table

__all__ = ["attach", "Client", "Placement", "Timeout", "NNodes"]

#: A deadline: seconds, or a ``datetime.timedelta``.
Timeout = Union[float, int, datetime.timedelta]
#: Nodes in a job: ``4``, ``"4"``, ``"2:8"`` (elastic) or ``(2, 8)``.
NNodes = Union[int, str, Tuple[int, int]]
#: Bytes for the key-value store; ``str`` is stored as UTF-8.
Value = Union[bytes, bytearray, memoryview, str]


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where this worker is in the job, and the GPU the agent assigned it."""

    #: The global rank, ``node_rank * local_world_size + local_rank``.
    rank: int
    #: Ranks in the job.
    world_size: int
    #: This worker's index on its host.
    local_rank: int
    #: Workers on its host.
    local_world_size: int
    #: Its host's index among the job's nodes (topology order).
    node_rank: int
    #: Nodes in the job.
    num_nodes: int
    #: The job's membership epoch this placement belongs to.
    generation: int
    #: The GPU's index on the host (the local_rank-th GPU).
    gpu_index: int
    #: The GPU's UUID ("SIM-..." when simulated).
    gpu_uuid: str
    #: The GPU's PCI bus id; empty when simulated.
    gpu_pci_bus_id: str
    #: The GPU's product name.
    gpu_name: str
    #: The GPU's NVLink fabric clique; empty when none.
    nvlink_clique: str
    #: Whether the agent declared simulated GPUs (a host without GPUs).
    simulated: bool


def _seconds(timeout: Optional[Timeout]) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be seconds or a datetime.timedelta, not {timeout!r}")
    return float(timeout)


def _positive_seconds(timeout: Timeout, what: str = "timeout") -> float:
    seconds = _seconds(timeout)
    if seconds is None:
        raise TypeError(f"{what} must be seconds or a datetime.timedelta, not None")
    if not seconds > 0:  # NaN too
        raise InvalidArgument(f"{what} must be positive, not {timeout!r}")
    return seconds


def _bytes(value: Value, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a key must be a str, not {type(key).__name__}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. from os.fsdecode of bytes)
        raise InvalidArgument(f"key {key!r} is not UTF-8 text (keys are strings; values may be "
                              "any bytes)") from None
    return key


def _keys(keys: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(keys, str):
        return [_key(keys)]
    return [_key(k) for k in keys]


def _int64(value: int, what: str) -> int:
    value = operator.index(value)  # TypeError for float, str, ...
    if not -2**63 <= value < 2**63:
        raise InvalidArgument(f"{what} {value} does not fit in 64 bits")
    return value


def _missing(value: Any, env: str, what: str) -> None:
    """InvalidArgument naming the argument and the variable when neither gives ``what``."""
    if value is None and not os.environ.get(env):
        raise InvalidArgument(f"no {what}: pass {what}= to attach() or set {env}")


def _nnodes(nnodes: Optional[NNodes]) -> Tuple[int, int]:
    """(min, max); (0, 0) lets the C++ client read $MESHD_NNODES."""
    if nnodes is None:
        return 0, 0
    if isinstance(nnodes, bool):
        raise TypeError(f"nnodes must be an int, 'N', 'MIN:MAX' or (min, max), not {nnodes!r}")
    if isinstance(nnodes, int):
        lo = hi = nnodes
    elif isinstance(nnodes, str):
        parts = nnodes.split(":")
        try:
            if len(parts) > 2:
                raise ValueError
            lo, hi = int(parts[0]), int(parts[-1])
        except ValueError:
            raise InvalidArgument(f"nnodes='{nnodes}' must be N or MIN:MAX") from None
    elif isinstance(nnodes, (tuple, list)) and len(nnodes) == 2:
        lo, hi = int(nnodes[0]), int(nnodes[1])
    else:
        raise TypeError(f"nnodes must be an int, 'N', 'MIN:MAX' or (min, max), not {nnodes!r}")
    if lo < 1 or hi < lo:
        raise InvalidArgument(f"nnodes {lo}:{hi} must satisfy 1 <= min <= max")
    return lo, hi


def _optional_int(value: Optional[int], what: str) -> int:
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {value!r}")
    if value < 0:
        raise InvalidArgument(f"{what}={value} must not be negative")
    return value


def attach(
    job: Optional[str] = None,
    socket: Union[str, "os.PathLike[str]", None] = None,
    local_rank: Optional[int] = None,
    local_world: Optional[int] = None,
    nnodes: Optional[NNodes] = None,
    timeout: Optional[Timeout] = 600.0,
) -> "Client":
    """Attaches this worker to the host's meshd agent and waits until the job's round closes.

    Every argument left ``None`` takes the C++ client's default: ``job`` from ``$MESHD_JOB``,
    ``socket`` from ``$MESHD_SOCKET`` (else ``/run/meshd/agent.sock``), ``local_rank`` and
    ``local_world`` from ``$LOCAL_RANK`` and ``$LOCAL_WORLD_SIZE`` (what torchrun sets), ``nnodes``
    from ``$MESHD_NNODES`` (else 1). ``nnodes`` is an int, ``"N"``, ``"MIN:MAX"`` (elastic) or
    ``(min, max)``. ``timeout`` (seconds or a timedelta; None: 600 s) bounds this call and is the
    default deadline of every later blocking call.

    Returns a :class:`Client` (a context manager that detaches on exit).

    Raises :class:`meshd.InvalidArgument` for missing or bad options (the message names the
    variable to set), :class:`meshd.Unavailable` when no agent serves the socket, the agent's and
    coordinator's errors otherwise, and KeyboardInterrupt on Ctrl-C.
    """
    lo, hi = _nnodes(nnodes)
    seconds = _positive_seconds(600.0 if timeout is None else timeout)
    _missing(job, "MESHD_JOB", "job")
    _missing(local_rank, "LOCAL_RANK", "local_rank")
    _missing(local_world, "LOCAL_WORLD_SIZE", "local_world")
    core = _core.attach(
        job or "",
        os.fspath(socket) if socket is not None else "",
        _optional_int(local_rank, "local_rank"),
        _optional_int(local_world, "local_world"),
        lo,
        hi,
        seconds,
    )
    return Client(core)


# Clients still attached when Python exits are detached first (their threads must not outlive
# the interpreter).
_live: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _detach_all() -> None:
    for client in list(_live):
        try:
            client.detach()
        except Exception:  # pragma: no cover - nothing useful to do at exit
            pass
    _core._shutdown()


class Client:
    """An attached worker: its placement, device meshes, NCCL ids and the generation's key-value
    store. Made by :func:`meshd.attach`.

    A context manager: ``with meshd.attach() as client: ...`` detaches on exit. After
    :meth:`detach` every call raises :class:`meshd.FailedPrecondition` ("detached"). Once the
    job's generation ended, calls raise :class:`meshd.Aborted` with the reason.
    """

    def __init__(self, core: _core._Client) -> None:
        """Wraps an attached ``_core._Client``; use :func:`meshd.attach` instead."""
        self._core = core
        self._placement = Placement(**core.placement)
        _live.add(self)

    # -- placement ---------------------------------------------------------------------------

    @property
    def placement(self) -> Placement:
        """Where this worker is in the job (a frozen :class:`Placement`)."""
        return self._placement

    @property
    def rank(self) -> int:
        """The global rank."""
        return self._placement.rank

    @property
    def world_size(self) -> int:
        """Ranks in the job."""
        return self._placement.world_size

    @property
    def local_rank(self) -> int:
        """This worker's index on its host."""
        return self._placement.local_rank

    @property
    def local_world_size(self) -> int:
        """Workers on this host."""
        return self._placement.local_world_size

    @property
    def node_rank(self) -> int:
        """This host's index among the job's nodes."""
        return self._placement.node_rank

    @property
    def num_nodes(self) -> int:
        """Nodes in the job."""
        return self._placement.num_nodes

    @property
    def generation(self) -> int:
        """The job's generation this client was attached in."""
        return self._placement.generation

    @property
    def timeout(self) -> float:
        """Seconds: the default deadline of the key-value calls (initially attach's timeout).

        Setting it (seconds or a timedelta) changes that default; ``init_device_mesh`` and the
        group exchanges keep attach's deadline.
        """
        return self._core.timeout

    @timeout.setter
    def timeout(self, value: Timeout) -> None:
        self._core.timeout = _positive_seconds(value)

    # -- lifetime ----------------------------------------------------------------------------

    def health(self) -> None:
        """Returns while the generation runs; raises :class:`meshd.Aborted` with the reason once
        it ended (:class:`meshd.FailedPrecondition` once detached)."""
        self._core.health()

    def on_generation_end(self, callback: Callable[[Error], None]) -> None:
        """Calls ``callback(error)`` once when the generation ends (``error`` is the
        :class:`meshd.Aborted` that calls now raise), on a meshd thread with the GIL held; at
        once, on this thread, if it already ended. What the callback raises is printed through
        ``sys.unraisablehook``, not propagated. A client detached first never calls it."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._core.on_generation_end(callback)

    def detach(self) -> None:
        """Leaves the job cleanly (the agent does not take this worker as lost). Idempotent;
        later calls raise :class:`meshd.FailedPrecondition` ("detached"), and calls in flight on
        other threads end at once with :class:`meshd.Cancelled`."""
        self._core.detach()
        _live.discard(self)

    @property
    def detached(self) -> bool:
        """Whether :meth:`detach` was called."""
        return self._core.detached

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        p = self._placement
        state = " detached" if self.detached else ""
        return (f"<meshd.Client rank {p.rank}/{p.world_size} node {p.node_rank}/{p.num_nodes} "
                f"local {p.local_rank}/{p.local_world_size} generation {p.generation}{state}>")

    # -- meshes ------------------------------------------------------------------------------

    def init_device_mesh(
        self,
        shape: Union[int, Sequence[int]],
        mesh_dim_names: Optional[Sequence[str]] = None,
        mesh_name: Optional[str] = None,
        *,
        nccl_ids: bool = True,
    ) -> DeviceMesh:
        """PyTorch's ``init_device_mesh(shape, mesh_dim_names=...)`` over the job's world.

        Every rank of the job must call it with the same arguments, in the same order as its
        other meshes. The mesh's spec is checked across ranks, and with ``nccl_ids`` (the
        default) the NCCL unique ids of every group of this rank are fetched in the same exchange
        (see :meth:`DeviceMesh.nccl_unique_ids`), answered as soon as those groups' leaders
        minted them: a rank that then asks for another mesh under the same name gets
        :class:`meshd.FailedPrecondition` naming both, and the ranks already answered learn it as
        the end of their generation (:class:`meshd.Aborted`, the same message).
        ``nccl_ids=False`` only checks the spec, waiting for every rank of the mesh so that a
        mismatch raises :class:`meshd.FailedPrecondition` on every rank, and mints no ids
        (gloo/CPU jobs). ``mesh_name`` registers it under a name (default: the n-th unnamed
        mesh).

        Raises :class:`meshd.InvalidArgument` for a shape that does not cover the world or bad
        names, :class:`meshd.FailedPrecondition` when ranks disagree or NCCL cannot mint ids,
        :class:`meshd.Aborted` after the generation ended, KeyboardInterrupt on Ctrl-C.
        """
        core = self._core.init_device_mesh(_dims(shape), _names(mesh_dim_names), mesh_name or "",
                                           bool(nccl_ids))
        return DeviceMesh(core, self)

    def init_device_mesh_from_ranks(
        self,
        mesh: Any,
        mesh_dim_names: Optional[Sequence[str]] = None,
        mesh_name: Optional[str] = None,
        *,
        nccl_ids: bool = True,
    ) -> DeviceMesh:
        """PyTorch's ``DeviceMesh(device_type, mesh, mesh_dim_names=...)`` over the job's world:
        ``mesh`` is a nested list of ranks (or a tensor) in any order, over any subset of the
        world (one pipeline stage, say), e.g. ``[[0, 2], [1, 3]]``.

        Checked and fetched as :meth:`init_device_mesh` (every rank of the job calls it with the
        same table); ranks outside the table get a mesh with no coordinate and take no part in
        its exchange. Tables other than 0..N-1 in order are exchanged up to 16,384 ranks. Raises
        :class:`meshd.InvalidArgument` for a ragged table, a rank outside the world or repeated,
        bad names; then as :meth:`init_device_mesh`.
        """
        if hasattr(mesh, "tolist"):
            mesh = mesh.tolist()
        shape, ranks = _table(mesh)
        core = self._core.init_device_mesh_from_ranks(shape, ranks, _names(mesh_dim_names),
                                                      mesh_name or "",
                                                      bool(nccl_ids))
        return DeviceMesh(core, self)

    def mesh_from_group(self, group: Group, mesh: Any = None, *,
                        mesh_dim_names: Optional[Sequence[str]] = None) -> DeviceMesh:
        """PyTorch's ``DeviceMesh.from_group(group, device_type, mesh, mesh_dim_names=...)`` for
        one group of this client (from :meth:`DeviceMesh.groups`): the 1-D mesh over the group's
        members, in its order, whose one group is ``group`` itself — the same ids, no call to
        anyone. Every member makes it from the same group.

        ``mesh``, when given, must be the group's ranks (PyTorch's ValueError:
        :class:`meshd.InvalidArgument` here); ``mesh_dim_names`` is one name, or None.
        """
        if not isinstance(group, Group):
            raise TypeError(f"mesh_from_group takes a meshd.Group, not {type(group).__name__}")
        if mesh is not None:
            given = mesh.tolist() if hasattr(mesh, "tolist") else mesh
            if list(given) != list(group.ranks):
                raise InvalidArgument(f"Invalid mesh {given!r} for the group with ranks "
                                      f"{group.ranks!r}")
        names = _names(mesh_dim_names)
        if len(names) > 1:
            raise InvalidArgument(f"a mesh from one group has one dim, not names {names!r}")
        core = self._core.mesh_from_group(group._to_core(), names[0] if names else "")
        return DeviceMesh(core, self)

    # -- the key-value store ------------------------------------------------------------------
    # torch.distributed Store semantics (TCPStore's results), kept by the coordinator for the
    # generation's lifetime. Keys are 1-1024 bytes, values up to 4 MiB. `timeout` (seconds or a
    # timedelta; None: self.timeout) bounds each call: meshd.DeadlineExceeded (a TimeoutError)
    # names the keys. After the generation ended they raise meshd.Aborted.

    def key_set(self, key: str, value: Value, timeout: Optional[Timeout] = None) -> None:
        """Sets ``key`` to ``value`` (bytes, or str stored as UTF-8)."""
        self._core.key_set(_key(key), _bytes(value, "value"), _seconds(timeout))

    def key_get(self, key: str, timeout: Optional[Timeout] = None) -> bytes:
        """Waits until ``key`` is set and returns its value."""
        return self._core.key_get(_key(key), _seconds(timeout))

    def key_add(self, key: str, delta: int, timeout: Optional[Timeout] = None) -> int:
        """Adds ``delta`` to the decimal counter at ``key`` (absent: 0) and returns the sum.

        Raises :class:`meshd.InvalidArgument` when the key holds something else,
        :class:`meshd.OutOfRange` on overflow."""
        return self._core.key_add(_key(key), _int64(delta, "delta"), _seconds(timeout))

    def key_compare_set(self, key: str, expected: Value, desired: Value,
                        timeout: Optional[Timeout] = None) -> bytes:
        """TCPStore's ``compare_set``: stores ``desired`` when ``key`` holds ``expected`` (or is
        absent and ``expected`` is empty) and returns the value now stored; returns ``expected``
        when the key is absent and ``expected`` is not empty."""
        return self._core.key_compare_set(_key(key), _bytes(expected, "expected"),
                                          _bytes(desired, "desired"), _seconds(timeout))

    def key_compare_swap(self, key: str, expected: Value, desired: Value,
                         timeout: Optional[Timeout] = None) -> Tuple[bool, bytes]:
        """As :meth:`key_compare_set`, and whether this call stored ``desired`` — which the value
        alone cannot tell when another caller stored the same bytes."""
        swapped, now = self._core.key_compare_swap(_key(key), _bytes(expected, "expected"),
                                                   _bytes(desired, "desired"), _seconds(timeout))
        return bool(swapped), now

    def key_wait(self, keys: Sequence[str], timeout: Optional[Timeout] = None) -> None:
        """Waits until every key of ``keys`` is set."""
        self._core.key_wait(_keys(keys), _seconds(timeout))

    def key_check(self, keys: Sequence[str], timeout: Optional[Timeout] = None) -> bool:
        """Whether every key of ``keys`` is set (no wait)."""
        return self._core.key_check(_keys(keys), _seconds(timeout))

    def key_delete(self, key: str, timeout: Optional[Timeout] = None) -> bool:
        """Removes ``key``; returns whether it was set."""
        return self._core.key_delete(_key(key), _seconds(timeout))

    def key_count(self, timeout: Optional[Timeout] = None) -> int:
        """How many keys are set."""
        return self._core.key_count(_seconds(timeout))

    # -- used by DeviceMesh ------------------------------------------------------------------

    def _groups(self, mesh: _core._DeviceMesh) -> List[Group]:
        return [Group._from_core(t) for t in self._core.groups(mesh)]

    def _group_of(self, mesh: _core._DeviceMesh, dim: int) -> Group:
        return Group._from_core(self._core.group_of(mesh, dim))
