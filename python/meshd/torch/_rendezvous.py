"""The process's meshd client for torch, the ``meshd://`` rendezvous, and generation end.

What lives here:
  * ``attach`` / ``client`` / ``detach``: one meshd client per process, shared by the rendezvous,
    ``Store`` and ``init_device_mesh``. A client whose generation ended is replaced by a fresh one
    on the next ``attach`` (the job's next generation).
  * ``rendezvous_handler``: what ``torch.distributed.init_process_group(init_method="meshd://...")``
    calls (registered by ``import meshd.torch``). It yields (store, rank, world_size): meshd's
    store, meshd's topology-aware rank and the job's size.
  * ``on_generation_end`` / ``set_abort_on_generation_end``: callbacks run when meshd ends the
    generation, then (when asked) the process groups are aborted where torch can abort them, or
    the process exits with a message where it cannot.

Thread-safety: every function may be called from any thread (attach/detach are serialised; the
state has its own lock, never held across a call into meshd); the generation-end callbacks run on
a client thread.
"""

from __future__ import annotations

import datetime
import importlib
import os
import sys
import threading
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import unquote, urlparse

import torch
import torch.distributed as dist

import meshd
from meshd.client import _nnodes as _parse_nnodes
from meshd.torch._store import Store

__all__ = [
    "GENERATION_END_EXIT_CODE",
    "attach",
    "client",
    "detach",
    "on_generation_end",
    "set_abort_on_generation_end",
    "rendezvous_handler",
]

#: The exit code of a process that ``abort_on_generation_end`` ends because torch cannot abort its
#: process groups (EX_TEMPFAIL: a launcher may start it again, into the job's next generation).
GENERATION_END_EXIT_CODE = 75

_NNodes = Union[int, str, None]


class _State:
    """Everything guarded by ``_lock``."""

    def __init__(self) -> None:
        self.client: Optional[meshd.Client] = None
        # What the client was attached with (None: from the environment), to refuse a second
        # attach() that asks for something else.
        self.args: Dict[str, Any] = {}
        # How many rendezvous opened a new default process group on this client (see _epoch).
        self.epoch = -1
        self.callbacks: List[Callable[[meshd.Error], None]] = []
        self.ended: Optional[meshd.Error] = None
        self.abort = False


# _attach_lock serialises attach and detach (they block: a rendezvous, the agent); _lock guards
# _state and is never held while calling meshd.
_attach_lock = threading.Lock()
_lock = threading.RLock()
_state = _State()


def _healthy(c: "meshd.Client") -> bool:
    try:
        c.health()
        return True
    except meshd.Error:
        return False


_ENV = {"socket": "MESHD_SOCKET", "job": "MESHD_JOB", "local_rank": "LOCAL_RANK",
        "local_world": "LOCAL_WORLD_SIZE", "nnodes": "MESHD_NNODES"}


def _resolved(args: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments with the environment's defaults filled in (for comparing two attaches; the
    client itself reads the environment)."""
    out = {}
    for name, value in args.items():
        if value is None:
            value = os.environ.get(_ENV[name]) or None
        if name == "socket" and value is None:
            value = "/run/meshd/agent.sock"
        if name == "nnodes" and value is not None:
            lo, hi = _parse_nnodes(value)  # 2, "2", "2:2", (2, 2): the same
            value = f"{lo}" if lo == hi else f"{lo}:{hi}"
        out[name] = None if value is None else str(value)
    return out


def attach(job: Optional[str] = None, *, socket: Optional[str] = None,
           local_rank: Optional[int] = None, local_world: Optional[int] = None,
           nnodes: _NNodes = None, timeout: Optional[float] = 600.0,
           abort_on_generation_end: Optional[bool] = None) -> "meshd.Client":
    """Attaches this process to its meshd job (once) and returns the client.

    The arguments are ``meshd.attach``'s (all but ``job`` by keyword); every one left None comes
    from the environment as there: MESHD_JOB, MESHD_SOCKET, LOCAL_RANK, LOCAL_WORLD_SIZE,
    MESHD_NNODES. A second call returns the same client
    while its generation runs (ValueError if it names a different job, socket or local rank); once
    the generation ended it detaches that client and attaches again (the job's next generation).

    ``abort_on_generation_end``: see ``set_abort_on_generation_end`` (None: leave as it is).
    Blocks until the job's round closes (every node joined), at most ``timeout`` seconds.
    """
    asked = {"socket": socket, "job": job, "local_rank": local_rank, "local_world": local_world,
             "nnodes": nnodes}
    with _attach_lock:
        with _lock:
            if abort_on_generation_end is not None:
                _state.abort = bool(abort_on_generation_end)
            c = _state.client
        if c is not None and _healthy(c):
            # Only what this call names explicitly is compared (meshd:// with no parameters
            # reuses whatever client is attached), against what the client was attached with
            # (the environment's defaults filled in).
            differs = {k: (v, _state.args.get(k)) for k, v in _resolved(asked).items()
                       if asked[k] is not None and v != _state.args.get(k)}
            if differs:
                what = ", ".join(f"{k}={new!r} (attached with {old!r})"
                                 for k, (new, old) in differs.items())
                raise ValueError(f"meshd.torch: this process is attached already; asked for {what}."
                                 " Call meshd.torch.detach() first to attach elsewhere.")
            return c
        if c is not None:
            _forget_and_detach()
        c = meshd.attach(job=job, socket=socket, local_rank=local_rank, local_world=local_world,
                         nnodes=nnodes, timeout=timeout)
        with _lock:
            _state.client = c
            _state.args = _resolved(asked)
            _state.epoch = -1
            _state.ended = None
    # The client runs the callback at once (on this thread) if the generation ended already.
    c.on_generation_end(lambda err, c=c: _generation_ended(c, err))
    return c


def client() -> "meshd.Client":
    """The meshd client of this process (attached by ``meshd://``, ``attach`` or
    ``init_device_mesh``). RuntimeError when none is attached."""
    with _lock:
        if _state.client is None:
            raise RuntimeError(
                "meshd.torch: no meshd client in this process: call "
                "torch.distributed.init_process_group(init_method='meshd://') or "
                "meshd.torch.attach() first")
        return _state.client


def attached() -> Optional["meshd.Client"]:
    """The attached client, or None."""
    with _lock:
        return _state.client


def detach() -> None:
    """Detaches the client (a later ``attach`` or ``meshd://`` attaches again). Process groups
    built on its store stop working: destroy them first."""
    with _attach_lock:
        _forget_and_detach()


def _forget_and_detach() -> None:
    # Called with _attach_lock held, never _lock: detaching may wait for the client's callback
    # thread, which may be waiting for _lock in _generation_ended.
    with _lock:
        c, _state.client = _state.client, None
        _state.args = {}
        _state.epoch = -1
        _state.ended = None
    if c is not None:
        try:
            c.detach()
        except meshd.Error:
            pass


# ---- generation end ---------------------------------------------------------------------------


def on_generation_end(callback: Callable[[meshd.Error], None]) -> None:
    """Runs ``callback(error)`` (on a client thread) when meshd ends the attached client's
    generation — a node lost or restarted, a mesh mismatch, shutdown; ``error`` is the
    ``meshd.Aborted`` that ``client().health()`` raises from then on. Runs at once (on this
    thread) if the generation ended already. Callbacks stay registered for the process: they run
    for every client this module attaches. They run before ``abort_on_generation_end`` acts."""
    with _lock:
        _state.callbacks.append(callback)
        ended = _state.ended
    if ended is not None:
        _run_callback(callback, ended)


def set_abort_on_generation_end(enabled: bool = True) -> None:
    """When meshd ends the generation, after the callbacks: abort the process groups, so no
    collective waits for a node that is gone.

    * torch with ``distributed_c10d._abort_process_group`` (2.x) and an NCCL default group: every
      process group is aborted (the API is documented for NCCL only); collectives in flight raise.
    * otherwise (torch 1.13, which has no abort; gloo on any version): the process prints the
      reason on stderr and exits with ``GENERATION_END_EXIT_CODE`` (75) — a collective blocked in
      gloo cannot be interrupted, and destroying its group from another thread would not wake it.
      A launcher (torchrun's ``--max-restarts``, systemd, a Kubernetes Job) starts it again.

    Also the URL parameter ``meshd://...?abort_on_generation_end=1``. Enabled after the
    generation ended already, it acts at once.
    """
    with _lock:
        _state.abort = bool(enabled)
        ended = _state.ended if enabled else None
    if ended is not None:
        _abort_or_exit(ended)


def _run_callback(cb: Callable[[meshd.Error], None], err: meshd.Error) -> None:
    try:
        cb(err)
    except BaseException:  # a callback's failure must not stop the others or the abort
        sys.stderr.write("meshd.torch: a generation-end callback raised:\n")
        traceback.print_exc()


def _generation_ended(c: "meshd.Client", err: Any) -> None:
    if not isinstance(err, BaseException):
        err = meshd.Aborted(str(err))
    with _lock:
        if c is not _state.client:
            return  # a client detached since
        _state.ended = err
        callbacks = list(_state.callbacks)
        abort = _state.abort
    for cb in callbacks:
        _run_callback(cb, err)
    if abort:
        _abort_or_exit(err)


def _nccl_world() -> bool:
    """Whether the default group has an NCCL backend: torch 2.x's ``get_backend_config()``
    ("cpu:gloo,cuda:nccl" for a group made without naming a backend, whose ``get_backend()``
    says "undefined"), else ``get_backend()``."""
    try:
        if not dist.is_initialized():
            return False
        config = getattr(dist, "get_backend_config", None)
        backends = config() if config is not None else dist.get_backend()
        return "nccl" in str(backends).lower()
    except Exception:
        return False


def _abort_or_exit(err: BaseException) -> None:
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    if abort is not None and _nccl_world():
        sys.stderr.write(f"meshd.torch: {err}\nmeshd.torch: aborting every process group "
                         f"(abort_on_generation_end, torch {torch.__version__})\n")
        sys.stderr.flush()
        try:
            abort()
            return
        except Exception as e:  # fall through to exiting
            sys.stderr.write(f"meshd.torch: aborting the process groups failed: {e}\n")
    try:
        backend = "no" if not dist.is_initialized() else str(dist.get_backend())
    except Exception:  # the group went away meanwhile
        backend = "no"
    sys.stderr.write(
        f"meshd.torch: {err}\nmeshd.torch: exiting with code {GENERATION_END_EXIT_CODE} "
        f"(abort_on_generation_end: torch {torch.__version__} cannot abort a {backend} process "
        "group that a collective may be blocked in)\n")
    sys.stderr.flush()
    try:
        sys.stdout.flush()
    except Exception:
        pass
    os._exit(GENERATION_END_EXIT_CODE)


# ---- the meshd:// rendezvous ------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_PARAMS = ("job", "nnodes", "local_rank", "local_world", "abort_on_generation_end")


def _error(msg: str) -> ValueError:
    # torch's rendezvous handlers raise ValueError("Error initializing torch.distributed using ...")
    return ValueError("Error initializing torch.distributed using meshd:// rendezvous: " + msg)


def parse_url(url: str) -> Tuple[Dict[str, Any], Optional[int], Optional[int]]:
    """Splits ``meshd://[SOCKET_PATH][?job=J&nnodes=N&local_rank=I&local_world=W&
    abort_on_generation_end=0|1]`` (plus the ``rank``/``world_size`` torch adds) into attach
    arguments, the rank and the world size torch was given (None when not)."""
    r = urlparse(url)
    if r.scheme != "meshd":
        raise _error(f"not a meshd:// URL: {url!r}")
    if r.netloc:
        raise _error(f"{url!r} names a host ({r.netloc!r}); meshd:// takes the local agent's "
                     "unix socket path: meshd:///run/meshd/agent.sock (three slashes), or meshd:// "
                     "for $MESHD_SOCKET")
    args: Dict[str, Any] = {"socket": unquote(r.path) or None}
    rank = world_size = None
    seen = set()
    for pair in filter(None, r.query.split("&")):
        name, eq, value = pair.partition("=")
        value = unquote(value)
        if not eq:
            raise _error(f"parameter {name!r} of {url!r} has no value (name=value)")
        if name in seen:
            raise _error(f"parameter {name!r} is given twice in {url!r}; give it once")
        seen.add(name)
        try:
            if name == "rank":
                rank = int(value) if int(value) >= 0 else None
            elif name == "world_size":
                world_size = int(value) if int(value) >= 0 else None
            elif name in ("local_rank", "local_world"):
                args[name] = int(value)
            elif name == "nnodes":
                args[name] = int(value) if value.isdigit() else value
            elif name == "job":
                args[name] = value
            elif name == "abort_on_generation_end":
                if value.lower() not in _TRUE | _FALSE:
                    raise ValueError(f"{value!r} is not 0/1/true/false")
                args[name] = value.lower() in _TRUE
            else:
                raise _error(f"unknown parameter {name!r} in {url!r}; meshd:// takes "
                             f"{', '.join(_PARAMS)} (every one defaults from the environment)")
        except ValueError as e:
            if str(e).startswith("Error initializing"):
                raise
            raise _error(f"bad value of {name!r} in {url!r}: {e}") from None
    return args, rank, world_size


def _epoch(c: "meshd.Client") -> int:
    """Which keyspace a rendezvous on ``c`` gets. Each rendezvous made while no default process
    group exists (an init_process_group) opens the next epoch; one made while it exists (torch RPC
    beside the default group) shares the current one. Epoch 0 is the store itself; a later epoch
    (init_process_group again after destroy_process_group, in the same generation) gets a fresh
    prefix, as a fresh TCPStore would be: torch restarts its group counter on destroy, so its
    barrier keys would collide with the previous group's."""
    with _lock:
        if c is not _state.client:
            return 0
        if _state.epoch < 0 or not dist.is_initialized():
            _state.epoch += 1
        return _state.epoch


def rendezvous_handler(url: str, timeout: datetime.timedelta = datetime.timedelta(minutes=30),
                       **kwargs: Any):
    """torch's rendezvous handler for ``meshd://``: attaches (or reuses the attached client) and
    yields (store, rank, world_size) from meshd. ``timeout`` (init_process_group's) bounds the
    attach and is the store's timeout."""
    args, want_rank, want_world = parse_url(url)
    abort = args.pop("abort_on_generation_end", None)
    seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else float(timeout)
    c = attach(**args, timeout=seconds, abort_on_generation_end=abort)
    where = (f"node {c.node_rank} of {c.num_nodes}, local rank {c.local_rank} of "
             f"{c.local_world_size}, generation {c.generation}")
    if want_world is not None and want_world != c.world_size:
        raise _error(f"init_process_group was given world_size={want_world}, but meshd's job has "
                     f"{c.world_size} ranks ({c.num_nodes} nodes x {c.local_world_size}); drop "
                     "world_size= (meshd knows it) or fix MESHD_NNODES / LOCAL_WORLD_SIZE")
    if want_rank is not None and want_rank != c.rank:
        raise _error(f"init_process_group was given rank={want_rank}, but meshd assigned this "
                     f"process rank {c.rank} ({where}); drop rank= (meshd assigns ranks by "
                     "topology) or fix LOCAL_RANK")
    # A later epoch's keyspace is the Store's own prefix, not a PrefixStore over it: torch 2.x's
    # ProcessGroupNCCL looks beneath every PrefixStore for its "global" store (its watchdog's dump
    # signal), which must not outlive the process group that left it.
    epoch = _epoch(c)
    store = Store(c, timeout if isinstance(timeout, datetime.timedelta)
                  else datetime.timedelta(seconds=seconds),
                  prefix=f"meshd.torch/{epoch}" if epoch > 0 else "")
    yield (store, c.rank, c.world_size)
    raise RuntimeError("Unable to perform re-rendezvous using meshd:// method: destroy the process "
                       "group and call init_process_group again (meshd attaches to the job's next "
                       "generation if this one ended)")


def register() -> None:
    """Registers ``meshd://`` with torch (idempotent)."""
    # (torch.distributed.rendezvous is also the name of a function in torch.distributed)
    rdzv = importlib.import_module("torch.distributed.rendezvous")
    handlers = getattr(rdzv, "_rendezvous_handlers", {})
    if handlers.get("meshd") is rendezvous_handler:
        return
    if "meshd" in handlers:  # an older copy of this module (importlib.reload)
        handlers["meshd"] = rendezvous_handler
        return
    rdzv.register_rendezvous_handler("meshd", rendezvous_handler)
