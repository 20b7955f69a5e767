"""Shared fixtures of the Python tests: real meshd daemons (meshd_cluster.py) and clients.

* ``standalone``: one ``meshd standalone`` with 8 simulated GPUs for the whole test module (jobs
  are isolated by name, so tests share it); ``job``: a fresh job name per test.
* ``attach_all(socket, job, n)``: n clients (local ranks 0..n-1 of one node) attached at once
  from threads of this process; ``collective(clients, fn)`` runs ``fn(client)`` on all of them at
  once (a collective call such as init_device_mesh needs every rank).
* ``nccl_or_skip``: skips a test when libnccl.so.2 cannot be loaded.

The built package comes first on sys.path (PYTHONPATH set by ctest, else build/python).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import itertools
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meshd_cluster as mc  # noqa: E402

if mc.package_path() not in sys.path:
    sys.path.insert(0, mc.package_path())

import meshd  # noqa: E402

T = TypeVar("T")

#: Deadline of one collective step of a test.
STEP_TIMEOUT = 30.0

_job_ids = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _meshd_binary() -> None:
    if not os.access(mc.meshd_bin(), os.X_OK):
        pytest.fail(f"no meshd binary at {mc.meshd_bin()}: build it, or set MESHD_BIN")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C++ client reads MESHD_*/LOCAL_* from the environment: start every test without
    them."""
    for k in list(os.environ):
        if k.startswith("MESHD_") and k not in ("MESHD_BIN", "MESHCTL_BIN", "MESHD_PYTHON",
                                                 "MESHD_PYTHONPATH", "MESHD_BUILD_DIR",
                                                 "MESHD_SOURCE_DIR", "MESHD_BUILD_LOCK",
                                                 "MESHD_NCCL_LIBRARY"):
            monkeypatch.delenv(k)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


@pytest.fixture(scope="module")
def standalone() -> Iterator[mc.Standalone]:
    """A ``meshd standalone`` with 8 simulated GPUs (node-0), shared by a test module."""
    with mc.standalone(gpus=8, node_name="node-0") as d:
        yield d


@pytest.fixture
def job(request: pytest.FixtureRequest) -> str:
    """A job name of its own for this test."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:100]
    return f"{name}-{os.getpid()}-{next(_job_ids)}"


def collective(clients: Sequence[T], fn: Callable[[T], object],
               timeout: float = STEP_TIMEOUT) -> List[object]:
    """Runs ``fn(c)`` for every client at once (one thread each); returns the results in order,
    raising the first exception."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
        futures = [pool.submit(fn, c) for c in clients]
        return [f.result(timeout=timeout) for f in futures]


def attach_all(socket: str, job: str, n: int, nnodes: object = 1,
               timeout: float = STEP_TIMEOUT) -> List[meshd.Client]:
    """n clients of one node (local ranks 0..n-1), attached at once from threads."""
    def one(r: int) -> meshd.Client:
        return meshd.attach(job=job, socket=socket, local_rank=r, local_world=n, nnodes=nnodes,
                            timeout=timeout)
    return collective(list(range(n)), one, timeout)  # type: ignore[return-value]


@pytest.fixture
def attach() -> Iterator[Callable[..., List[meshd.Client]]]:
    """``attach(socket, job, n)``: like ``attach_all``, every client detached after the test."""
    made: List[meshd.Client] = []

    def do(socket: str, job: str, n: int, **kwargs: object) -> List[meshd.Client]:
        clients = attach_all(socket, job, n, **kwargs)  # type: ignore[arg-type]
        made.extend(clients)
        return clients

    yield do
    for c in made:
        c.detach()


def nccl_loadable() -> Optional[str]:
    """None when NCCL loads (as libmeshd_client loads it), else why not."""
    lib = os.environ.get("MESHD_NCCL_LIBRARY") or "libnccl.so.2"
    try:
        ctypes.CDLL(lib)
        return None
    except OSError as e:
        return f"cannot load NCCL ({lib}: {e}); set MESHD_NCCL_LIBRARY to run this test"


@pytest.fixture
def nccl_or_skip() -> None:
    """Skips the test when NCCL cannot be loaded (ids are minted with the real ncclGetUniqueId)."""
    why = nccl_loadable()
    if why:
        pytest.skip(why)
