"""meshd.torch.Store: torch.distributed's Store served by meshd's per-generation key-value store.

A Python subclass of ``torch.distributed.Store``. c10d's ``PythonStore`` trampoline lets C++
callers (ProcessGroupGloo/NCCL, ``PrefixStore``, the store-based barrier) call these methods, so
the same object works wherever torch takes a store. The trampoline looks the methods up by their
C++ names for some of them (``getNumKeys``, ``deleteKey``, ``check``, ``wait``, ``add``,
``clone``) and by their Python names for others (``set``, ``get``, ``compare_set``, ``append``,
``multi_get``, ``multi_set``), so both spellings are defined here.

Semantics are TCPStore's (tests/python/test_torch_store.py runs one sequence against both and
compares every result): ``get`` and ``wait`` block until the keys exist, at most the store's
timeout (``timeout``, set by ``set_timeout``; a zero timeout waits forever, as c10d's kNoTimeout),
and raise a RuntimeError on timeout — here :class:`StoreTimeoutError`, which is also
``meshd.DeadlineExceeded``, ``TimeoutError`` and, on a torch that has it,
``torch.distributed.DistStoreError`` (what 2.x's TCPStore raises).

Where meshd differs from TCPStore (docs/python.md lists these): keys are 1-1024 bytes of UTF-8
(TCPStore takes an empty key, and any bytes), values at most 4 MiB; ``add`` on a key that holds no integer raises
``meshd.InvalidArgument`` (1.13's TCPStore server drops the connection); the keys live as long as
the job's generation (a new generation starts empty), in the coordinator's memory; after the
generation ended every call raises ``meshd.Aborted``.

Thread-safety: every method may be called from any thread (the client is thread-safe and releases
the GIL while it waits).
"""

from __future__ import annotations

import datetime
import operator
import threading
from typing import Iterable, List, Optional, Sequence, Union

import torch.distributed as dist

import meshd

__all__ = ["Store", "StoreTimeoutError"]

# c10d's Store::kNoTimeout is zero: wait without a deadline. meshd's calls always take one; this
# stands for "forever" (ten years).
_FOREVER_S = 10 * 365 * 24 * 3600.0

_DistStoreError = getattr(dist, "DistStoreError", None)  # torch >= 2.2; absent on 1.13

if _DistStoreError is not None:

    class StoreTimeoutError(meshd.DeadlineExceeded, _DistStoreError):  # type: ignore[misc,valid-type]
        """A Store call's timeout passed: meshd.DeadlineExceeded (a RuntimeError and a
        TimeoutError) and torch.distributed.DistStoreError, as TCPStore raises."""

else:

    class StoreTimeoutError(meshd.DeadlineExceeded):  # type: ignore[no-redef]
        """A Store call's timeout passed: meshd.DeadlineExceeded, a RuntimeError (what TCPStore
        raises on torch 1.13) and a TimeoutError."""


Bytes = Union[str, bytes, bytearray, memoryview]

# Every Store ever made, for the life of the process. c10d's C++ side (PrefixStore, the process
# groups, clone()) keeps only the C++ half of a Python store: once Python drops its last reference,
# the methods defined here are gone and C++ calls fail with "Tried to call pure virtual function".
# init_process_group keeps no Python reference to the store it got from the rendezvous, so the
# stores are kept here instead (a few small objects: one per rendezvous, clone or user's Store).
_kept_lock = threading.Lock()
_kept: "List[Store]" = []


def _to_bytes(value: Bytes, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)) and all(isinstance(b, int) for b in value):
        return bytes(value)  # std::vector<uint8_t> from C++ arrives as a list of ints
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def _to_key(key: Union[str, bytes]) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        try:
            return bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise meshd.InvalidArgument(
                f"store key {bytes(key)!r} is not UTF-8 text: meshd's keys are strings (TCPStore "
                "takes any bytes; values may be any bytes here too)") from None
    raise TypeError(f"a store key must be str, not {type(key).__name__}")


def _keys(keys: Union[str, Iterable[str]]) -> List[str]:
    if isinstance(keys, (str, bytes)):
        raise TypeError("keys must be a list of str, not a single key")
    return [_to_key(k) for k in keys]


def _seconds(timeout: Optional[datetime.timedelta]) -> float:
    if timeout is None:
        return _FOREVER_S
    if isinstance(timeout, (int, float)):
        seconds = float(timeout)
    else:
        seconds = timeout.total_seconds()
    if seconds <= 0:  # c10d's kNoTimeout
        return _FOREVER_S
    return seconds


class Store(dist.Store):
    """``torch.distributed.Store`` on meshd's key-value store of the attached client's job
    generation.

    Args:
        client: a ``meshd.Client``; default: ``meshd.torch.client()`` (attaching from the
            environment if no client is attached yet).
        timeout: how long ``get``/``wait``/... wait (a ``datetime.timedelta``; zero waits forever).
            Default 300 s, as c10d's Store.
        prefix: a keyspace of its own within the generation's store: every key is stored as
            ``prefix + "/" + key``, as a ``PrefixStore`` would — but unlike a PrefixStore over
            it, the prefix stays when torch looks beneath every PrefixStore (ProcessGroupNCCL's
            "global" store, where its watchdog leaves its dump signal).

    Every rank of the job that builds a Store sees the same keys: one store per job generation.
    A Store lives as long as the process (c10d's C++ side holds stores without their Python half,
    so meshd.torch keeps every one).
    """

    def __init__(self, client: "Optional[meshd.Client]" = None,
                 timeout: datetime.timedelta = datetime.timedelta(seconds=300),
                 prefix: str = "") -> None:
        super().__init__()
        if client is None:
            from meshd.torch import _rendezvous

            client = _rendezvous.attached() or _rendezvous.attach()
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        self._client = client
        self._prefix = prefix + "/" if prefix else ""
        self.set_timeout(timeout)
        with _kept_lock:
            _kept.append(self)

    @property
    def client(self) -> "meshd.Client":
        """The meshd client this store talks through."""
        return self._client

    @property
    def prefix(self) -> str:
        """The keyspace's prefix ("" for the generation's store itself)."""
        return self._prefix[:-1]

    def __repr__(self) -> str:
        prefix = f", prefix={self.prefix!r}" if self._prefix else ""
        return (f"meshd.torch.Store(rank={self._client.rank}, "
                f"generation={self._client.generation}, timeout={self.timeout}{prefix})")

    def _key(self, key: Union[str, bytes]) -> str:
        return self._prefix + _to_key(key)

    def _keys(self, keys: Union[str, Iterable[str]]) -> List[str]:
        return [self._prefix + k for k in _keys(keys)]

    # ---- the c10d Store interface -------------------------------------------------------------

    def _wait_s(self) -> float:
        # The C++ base keeps the timeout (set_timeout is a non-virtual C++ method, so C++ callers
        # and Python callers set the same value); read it on every call.
        return _seconds(self.timeout)

    def _timeout_error(self, e: meshd.DeadlineExceeded, op: str, keys: Sequence[str],
                       seconds: float) -> StoreTimeoutError:
        shown = ", ".join(repr(k) for k in list(keys)[:8]) + (" ..." if len(keys) > 8 else "")
        return StoreTimeoutError(
            f"meshd store: {op} timed out after {seconds:g} s waiting for key(s) {shown}: {e}")

    def set(self, key: str, value: Bytes) -> None:
        """Stores ``value`` under ``key`` (overwriting), waking whoever waits for it."""
        self._client.key_set(self._key(key), _to_bytes(value, "value"), timeout=self._wait_s())

    def get(self, key: str) -> bytes:
        """The value of ``key``; waits for it to be set, at most the store's timeout."""
        seconds = self._wait_s()
        try:
            return self._client.key_get(self._key(key), timeout=seconds)
        except meshd.DeadlineExceeded as e:
            raise self._timeout_error(e, "get", [_to_key(key)], seconds) from e

    def add(self, key: str, amount: int) -> int:
        """Adds ``amount`` to the decimal counter at ``key`` (absent: 0) and returns the sum.
        meshd.InvalidArgument when the key holds something else; meshd.OutOfRange on overflow."""
        delta = operator.index(amount)  # TypeError for str, float, ... as torch's int64_t
        if not -2**63 <= delta < 2**63:
            raise TypeError(f"add: amount {delta} does not fit in 64 bits (torch's int64_t)")
        return int(self._client.key_add(self._key(key), delta, timeout=self._wait_s()))

    def compare_set(self, key: str, expected_value: Bytes, desired_value: Bytes) -> bytes:
        """TCPStore's compare_set: stores ``desired_value`` if ``key`` holds ``expected_value``
        (or is absent and ``expected_value`` is empty) and returns the value now stored; returns
        ``expected_value`` when the key is absent and ``expected_value`` is not empty."""
        return self._client.key_compare_set(self._key(key),
                                            _to_bytes(expected_value, "expected_value"),
                                            _to_bytes(desired_value, "desired_value"),
                                            timeout=self._wait_s())

    def wait(self, keys: Sequence[str], timeout: Optional[datetime.timedelta] = None) -> None:
        """Waits until every key is set: at most ``timeout`` (default the store's; zero waits
        forever)."""
        asked = _keys(keys)
        seconds = self._wait_s() if timeout is None else _seconds(timeout)
        if not asked:
            return
        try:
            self._client.key_wait([self._prefix + k for k in asked], timeout=seconds)
        except meshd.DeadlineExceeded as e:
            raise self._timeout_error(e, "wait", asked, seconds) from e

    def check(self, keys: Sequence[str]) -> bool:
        """Whether every key is set (does not wait)."""
        keys = self._keys(keys)
        if not keys:
            return True
        return bool(self._client.key_check(keys, timeout=self._wait_s()))

    def delete_key(self, key: str) -> bool:
        """Removes ``key``; whether it was set."""
        return bool(self._client.key_delete(self._key(key), timeout=self._wait_s()))

    def num_keys(self) -> int:
        """How many keys the job generation's store holds (every rank's, like TCPStore's server;
        unlike a TCPStore built with ``world_size``, no "init/" key of its own)."""
        return int(self._client.key_count(timeout=self._wait_s()))

    # c10d's C++ names, which the PythonStore trampoline looks up for C++ callers.
    deleteKey = delete_key
    getNumKeys = num_keys

    # ---- torch 2.x extras ---------------------------------------------------------------------

    def clone(self) -> "Store":
        """Another handle on the same store (2.x's trampoline requires it)."""
        return Store(self._client, self.timeout, self.prefix)

    def append(self, key: str, value: Bytes) -> None:
        """Appends ``value`` to the bytes at ``key`` (absent: creates it), atomically."""
        key = self._key(key)
        tail = _to_bytes(value, "value")
        seconds = self._wait_s()
        while True:
            # compare_set with an empty expected value also swaps an absent key.
            present = self._client.key_check([key], timeout=seconds)
            current = self._client.key_get(key, timeout=seconds) if present else b""
            desired = current + tail
            swapped, _ = self._client.key_compare_swap(key, current, desired, timeout=seconds)
            if swapped:  # not merely equal: another rank may have appended the same bytes
                return

    def multi_get(self, keys: Sequence[str]) -> List[bytes]:
        """The values of ``keys`` (each waited for, as ``get``)."""
        return [self.get(k) for k in _keys(keys)]

    def multi_set(self, keys: Sequence[str], values: Sequence[Bytes]) -> None:
        """Sets every key to its value."""
        keys = _keys(keys)
        if len(keys) != len(values):
            raise ValueError(f"multi_set: {len(keys)} keys but {len(values)} values")
        for k, v in zip(keys, values):
            self.set(k, v)
