"""meshd: device meshes, NCCL unique ids and a key-value store for PyTorch jobs, from the host's
meshd agent — a binding of libmeshd_client (C++), not a re-implementation.

::

    import meshd

    with meshd.attach() as client:        # MESHD_JOB, MESHD_SOCKET, LOCAL_RANK, ... from torchrun
        mesh = client.init_device_mesh((2, 4), mesh_dim_names=("dp", "tp"))
        tp_ids = mesh.nccl_unique_ids("tp")   # the same bytes on every member of this rank's group
        client.key_set("ready", b"1")

Errors are :class:`meshd.Error` subclasses, one per canonical status code (``meshd.Aborted`` once
the job's generation ended, ``meshd.DeadlineExceeded`` — a TimeoutError — at a deadline, ...).
Blocking calls release the GIL and end with KeyboardInterrupt on Ctrl-C.
"""

from meshd.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    Error,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    error_class,
)
from meshd.mesh import DeviceMesh, Group
from meshd.client import Client, Placement, attach

__version__ = "0.1.0"

__all__ = [
    "attach",
    "Client",
    "Placement",
    "DeviceMesh",
    "Group",
    "Error",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
    "error_class",
]
