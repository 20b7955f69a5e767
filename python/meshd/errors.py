"""meshd's errors: one exception class per canonical status code (abseil's vocabulary).

Every error of libmeshd_client (an ``absl::Status``) reaches Python as an instance of the class of
its code, a subclass of :class:`Error`, with the C++ message as its text::

    try:
        client.key_get("k", timeout=1.0)
    except meshd.DeadlineExceeded as e:     # also a TimeoutError
        print(e.code, e)                    # DEADLINE_EXCEEDED cannot get key 'k' of job ...

What the codes mean here (abseil's guide): ``Unavailable`` retry the call; ``Aborted`` the job's
generation ended, abort communicators and attach again; ``FailedPrecondition`` do not retry until
the state is fixed.
"""

from __future__ import annotations

from typing import Dict, Type

__all__ = [
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


class Error(RuntimeError):
    """Base class of every meshd error.

    ``code`` is the canonical code's name (e.g. ``"FAILED_PRECONDITION"``); ``str(e)`` is the
    C++ message.
    """

    #: The canonical code's name, e.g. "FAILED_PRECONDITION".
    code: str = "UNKNOWN"
    #: The canonical code's number (absl::StatusCode).
    code_value: int = 2


class Cancelled(Error):
    """CANCELLED: the call was cancelled (e.g. interrupted by another thread or Ctrl-C)."""

    code = "CANCELLED"
    code_value = 1


class Unknown(Error):
    """UNKNOWN: an error of no other class."""

    code = "UNKNOWN"
    code_value = 2


class InvalidArgument(Error, ValueError):
    """INVALID_ARGUMENT: a bad argument or option (the message says which and how to fix it).
    Also a :class:`ValueError`."""

    code = "INVALID_ARGUMENT"
    code_value = 3


class DeadlineExceeded(Error, TimeoutError):
    """DEADLINE_EXCEEDED: the call's timeout passed. Also a :class:`TimeoutError`."""

    code = "DEADLINE_EXCEEDED"
    code_value = 4


class NotFound(Error):
    """NOT_FOUND: what was named does not exist."""

    code = "NOT_FOUND"
    code_value = 5


class AlreadyExists(Error):
    """ALREADY_EXISTS: what was to be created exists already."""

    code = "ALREADY_EXISTS"
    code_value = 6


class PermissionDenied(Error):
    """PERMISSION_DENIED: not allowed (e.g. the agent's socket)."""

    code = "PERMISSION_DENIED"
    code_value = 7


class ResourceExhausted(Error):
    """RESOURCE_EXHAUSTED: a limit was reached (e.g. the job's store holds as many keys or bytes
    as the coordinator allows)."""

    code = "RESOURCE_EXHAUSTED"
    code_value = 8


class FailedPrecondition(Error):
    """FAILED_PRECONDITION: the system is not in a state the call needs; do not retry until it is
    fixed (e.g. the client was detached, ranks asked for different meshes, NCCL is missing)."""

    code = "FAILED_PRECONDITION"
    code_value = 9


class Aborted(Error):
    """ABORTED: the job's generation ended (a node lost, restarted or joining); abort
    communicators and attach again."""

    code = "ABORTED"
    code_value = 10


class OutOfRange(Error):
    """OUT_OF_RANGE: past a valid range (e.g. a counter's overflow)."""

    code = "OUT_OF_RANGE"
    code_value = 11


class Unimplemented(Error):
    """UNIMPLEMENTED: not supported by this meshd."""

    code = "UNIMPLEMENTED"
    code_value = 12


class Internal(Error):
    """INTERNAL: a broken invariant in meshd (a bug: please report it)."""

    code = "INTERNAL"
    code_value = 13


class Unavailable(Error):
    """UNAVAILABLE: meshd cannot be reached now (e.g. no agent at the socket); retrying may
    help."""

    code = "UNAVAILABLE"
    code_value = 14


class DataLoss(Error):
    """DATA_LOSS: unrecoverable loss or corruption of data."""

    code = "DATA_LOSS"
    code_value = 15


class Unauthenticated(Error):
    """UNAUTHENTICATED: the caller's identity could not be established."""

    code = "UNAUTHENTICATED"
    code_value = 16


_BY_VALUE: Dict[int, Type[Error]] = {
    cls.code_value: cls
    for cls in (Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
                PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
                Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)
}
_BY_NAME: Dict[str, Type[Error]] = {cls.code: cls for cls in _BY_VALUE.values()}


def error_class(code: "int | str") -> Type[Error]:
    """The class of a canonical code, by number (absl::StatusCode) or name ("ABORTED").

    Codes meshd does not know map to :class:`Unknown`.
    """
    if isinstance(code, str):
        return _BY_NAME.get(code, Unknown)
    return _BY_VALUE.get(int(code), Unknown)
