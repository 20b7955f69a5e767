"""meshd.torch.Store against a real torch.distributed.TCPStore: one sequence of operations runs on
both, and every result must be the same — values, return types, errors and how long a timeout
took. The sequence also goes through a C++ PrefixStore (the PythonStore trampoline: what gloo and
the store-based barrier call). Then what deliberately differs, each pinned down.

One meshd standalone (1 simulated GPU) and this process attached as the job's only rank.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest

import meshd_cluster
from torch_support import import_torch

torch, mt = import_torch()
import torch.distributed as dist  # noqa: E402

import meshd  # noqa: E402

MS = datetime.timedelta(milliseconds=1)
TIMEOUT_SLACK_S = 0.35  # how far apart the two stores' timeouts may end
DistStoreError = getattr(dist, "DistStoreError", None)


@pytest.fixture(scope="module")
def client():
    with meshd_cluster.standalone(gpus=1) as d:
        c = mt.attach(socket=d.socket, job="store-test", local_rank=0, local_world=1, nnodes=1,
                      timeout=30)
        try:
            yield c
        finally:
            mt.detach()


def _tcpstore(world_size=None) -> "dist.TCPStore":
    # world_size=None: no "init/" key of its own (see test_num_keys_counts_like_tcpstore).
    return dist.TCPStore("127.0.0.1", 0, world_size, True, datetime.timedelta(seconds=5))


def _kind(e: BaseException) -> Tuple[str, ...]:
    """What a torch caller can tell of an error: the torch-relevant classes it is an instance of."""
    classes = [RuntimeError, TypeError, ValueError, KeyError]
    if DistStoreError is not None:
        classes.append(DistStoreError)
    return tuple(c.__name__ for c in classes if isinstance(e, c))


def _run(fn: Callable[[], Any]) -> Tuple[str, Any, float, BaseException | None]:
    t0 = time.monotonic()
    try:
        value = fn()
        return "ok", value, time.monotonic() - t0, None
    except Exception as e:  # compared below
        return "raises", _kind(e), time.monotonic() - t0, e


def _check(store, keys: List[str]) -> bool:
    # torch 1.13 binds no Store.check for TCPStore (the C++ method exists: PrefixStore and gloo use
    # it); there "all keys exist now" is asked as a wait that may not wait.
    if hasattr(store, "check"):
        return store.check(keys)
    try:
        store.wait(keys, 20 * MS)
        return True
    except RuntimeError:
        return False


def _sequence(s, other) -> List[Tuple[str, Callable[[], Any]]]:
    """The operations, as (name, thunk) on ``s``; ``other`` is a second handle on the same store
    (another TCPStore client; for meshd another Store on the client) for another thread."""
    p = dist.PrefixStore("pfx", s)  # C++: every call goes through the PythonStore trampoline

    def late_set():
        # The setter runs on another thread while get waits. The delay only makes the waiting
        # path likely; the result is the same in either order.
        t = threading.Timer(0.1, lambda: other.set("late", "arrived"))
        t.start()
        try:
            return s.get("late")
        finally:
            t.join()

    return [
        ("set str", lambda: s.set("a", "1")),
        ("get", lambda: s.get("a")),
        ("set bytes", lambda: s.set("b", b"\x00\xff\x10")),
        ("get bytes", lambda: s.get("b")),
        ("add existing", lambda: s.add("a", 2)),
        ("get added", lambda: s.get("a")),
        ("add new negative", lambda: s.add("n", -5)),
        ("add zero", lambda: s.add("n", 0)),
        ("add creates", lambda: s.add("z", 0)),
        ("get created counter", lambda: s.get("z")),
        ("add large", lambda: s.add("big", 2 ** 62)),
        ("add large again", lambda: s.add("big", 2 ** 62 - 1)),
        ("compare_set absent, expected empty", lambda: s.compare_set("cs1", "", "x")),
        ("compare_set absent, expected set", lambda: s.compare_set("cs2", "q", "x")),
        ("check after refused compare_set", lambda: _check(s, ["cs2"])),
        ("compare_set match", lambda: s.compare_set("cs1", "x", "y")),
        ("compare_set mismatch", lambda: s.compare_set("cs1", "x", "z")),
        ("compare_set bytes", lambda: s.compare_set("cs1", b"y", b"\x00\x01")),
        ("get after compare_set", lambda: s.get("cs1")),
        ("overwrite", lambda: s.set("a", "again")),
        ("get overwritten", lambda: s.get("a")),
        ("unicode key and value", lambda: s.set("ключ/✓", "значение")),
        ("get unicode", lambda: s.get("ключ/✓")),
        ("1 MiB value", lambda: s.set("mib", bytes(range(256)) * 4096)),
        ("get 1 MiB", lambda: s.get("mib") == bytes(range(256)) * 4096),
        ("check present", lambda: _check(s, ["a", "b", "cs1"])),
        ("check one missing", lambda: _check(s, ["a", "missing"])),
        ("wait present", lambda: s.wait(["a", "b"])),
        ("wait empty list", lambda: s.wait([])),
        ("wait missing, 300 ms", lambda: s.wait(["missing"], 300 * MS)),
        ("wait one of two missing, 300 ms", lambda: s.wait(["a", "missing"], 300 * MS)),
        ("set_timeout 400 ms", lambda: s.set_timeout(400 * MS)),
        ("timeout", lambda: s.timeout),
        ("get missing: the store's timeout", lambda: s.get("missing")),
        ("wait missing: the store's timeout", lambda: s.wait(["missing"])),
        ("set_timeout 5 s", lambda: s.set_timeout(5000 * MS)),
        ("get set by another thread", late_set),
        ("num_keys", lambda: s.num_keys()),
        ("delete present", lambda: s.delete_key("a")),
        ("delete again", lambda: s.delete_key("a")),
        ("delete never set", lambda: s.delete_key("never")),
        ("num_keys after delete", lambda: s.num_keys()),
        ("add re-creates deleted", lambda: s.add("a", 7)),
        ("set int value", lambda: s.set("i", 5)),
        ("add non-int amount", lambda: s.add("n", "1")),
        # Through a C++ PrefixStore: the trampoline's names (deleteKey, getNumKeys, add, wait...).
        ("prefix set", lambda: p.set("k", "v")),
        ("prefix get", lambda: p.get("k")),
        ("prefix key seen unprefixed", lambda: s.get("pfx/k")),
        ("prefix add", lambda: p.add("c", 5)),
        ("prefix add again", lambda: p.add("c", -2)),
        ("prefix compare_set", lambda: p.compare_set("k", "v", "w")),
        ("prefix wait", lambda: p.wait(["k", "c"])),
        ("prefix wait missing, 300 ms", lambda: p.wait(["nope"], 300 * MS)),
        ("prefix get missing: the store's timeout", lambda: (s.set_timeout(300 * MS),
                                                             p.get("nope"))),
        ("restore timeout", lambda: s.set_timeout(5000 * MS)),
        ("prefix delete", lambda: p.delete_key("k")),
        ("prefix delete again", lambda: p.delete_key("k")),
        ("prefix num_keys", lambda: p.num_keys()),
        ("num_keys at the end", lambda: s.num_keys()),
    ]


def test_sequence_matches_tcpstore(client):
    tcp = _tcpstore()
    tcp_other = dist.TCPStore("127.0.0.1", tcp.port, None, False, datetime.timedelta(seconds=5))
    ours = mt.Store(client, datetime.timedelta(seconds=5))
    ours_other = mt.Store(client, datetime.timedelta(seconds=5))
    assert ours.num_keys() == tcp.num_keys() == 0, "both stores must start empty"

    want_ops = _sequence(tcp, tcp_other)
    got_ops = _sequence(ours, ours_other)
    diffs = []
    report = []
    for (name, want_fn), (_, got_fn) in zip(want_ops, got_ops):
        want, got = _run(want_fn), _run(got_fn)
        report.append(f"{name:40s} tcp={want[0]} {want[1]!r:.60} {want[2]:.2f}s   "
                      f"meshd={got[0]} {got[1]!r:.60} {got[2]:.2f}s")
        if (want[0], want[1]) != (got[0], got[1]):
            diffs.append(f"{name}: TCPStore {want[0]} {want[1]!r} ({want[3]!r}), "
                         f"meshd {got[0]} {got[1]!r} ({got[3]!r})")
            continue
        if want[0] == "raises" and want[2] > 0.2:  # a timeout: it must end when TCPStore's did
            if abs(want[2] - got[2]) > TIMEOUT_SLACK_S:
                diffs.append(f"{name}: TCPStore timed out after {want[2]:.2f}s, meshd after "
                             f"{got[2]:.2f}s")
            if not isinstance(got[3], (mt.StoreTimeoutError, meshd.DeadlineExceeded)):
                diffs.append(f"{name}: meshd raised {got[3]!r}, not a StoreTimeoutError")
            elif not isinstance(got[3], TimeoutError):
                diffs.append(f"{name}: {got[3]!r} is not a TimeoutError")
    print("\n".join(report))
    assert not diffs, "meshd.torch.Store differs from TCPStore:\n" + "\n".join(diffs)
    assert len(report) == len(want_ops)


def test_num_keys_counts_like_tcpstore(client):
    # TCPStore built with a world_size (as env:// and tcp:// do) counts one key of its own, the
    # "init/" counter its constructor adds to: its num_keys is one more than the keys set. meshd's
    # store has no such key; the comparison above uses world_size=None, which adds none.
    with_world = _tcpstore(world_size=1)
    without = _tcpstore()
    assert (with_world.num_keys(), without.num_keys()) == (1, 0)
    fresh = mt.Store(client)
    base = fresh.num_keys()
    fresh.set("nk/one", "1")
    with_world.set("nk/one", "1")
    assert fresh.num_keys() - base == with_world.num_keys() - 1 == 1


def test_timeouts_raise_what_torch_callers_expect(client):
    s = mt.Store(client, 200 * MS)
    with pytest.raises(RuntimeError) as info:  # TCPStore on 1.13: RuntimeError("Socket Timeout")
        s.get("never/set")
    e = info.value
    assert isinstance(e, mt.StoreTimeoutError)
    assert isinstance(e, meshd.DeadlineExceeded) and isinstance(e, TimeoutError)
    assert e.code == "DEADLINE_EXCEEDED"
    assert "never/set" in str(e)
    if DistStoreError is not None:  # torch 2.x: TCPStore raises DistStoreError
        assert isinstance(e, DistStoreError)
    with pytest.raises(mt.StoreTimeoutError, match="never/set"):
        s.wait(["never/set"])


def test_zero_timeout_waits_until_set(client):
    # c10d's kNoTimeout (0) means no deadline.
    s = mt.Store(client, datetime.timedelta(0))
    other = mt.Store(client)
    t = threading.Timer(0.3, lambda: other.set("zero/late", "v"))
    t.start()
    try:
        assert s.get("zero/late") == b"v"
    finally:
        t.join()


def test_store_works_for_gloo(client):
    # A real gloo process group on meshd's store: ProcessGroupGloo calls set/get/wait through the
    # trampoline from C++.
    s = mt.Store(client, datetime.timedelta(seconds=10))
    pg = dist.ProcessGroupGloo(dist.PrefixStore("gloo-direct", s), 0, 1)
    t = torch.ones(3)
    pg.allreduce([t]).wait()
    assert t.tolist() == [1.0, 1.0, 1.0]


def test_clone_and_extras(client):
    s = mt.Store(client)
    c = s.clone()
    assert isinstance(c, mt.Store) and c.timeout == s.timeout
    c.set("x/clone", "1")
    assert s.get("x/clone") == b"1"
    s.append("x/app", "ab")
    s.append("x/app", b"cd")
    assert s.get("x/app") == b"abcd"
    s.multi_set(["x/m1", "x/m2"], ["1", b"2"])
    assert s.multi_get(["x/m1", "x/m2"]) == [b"1", b"2"]


# ---- where meshd deliberately differs (docs/python.md, "What differs from TCPStore") ----------


def test_differs_empty_key_is_refused(client):
    # TCPStore takes "" as a key; meshd's keys are 1-1024 bytes.
    tcp = _tcpstore()
    tcp.set("", "v")
    assert tcp.get("") == b"v"
    with pytest.raises(meshd.InvalidArgument):
        mt.Store(client).set("", "v")


def test_differs_add_on_non_integer_is_an_error_not_a_dropped_connection(client):
    s = mt.Store(client)
    s.set("x/text", "abc")
    with pytest.raises(meshd.InvalidArgument):
        s.add("x/text", 1)
    assert s.get("x/text") == b"abc"  # the store still serves


def test_differs_overflow_is_an_error_not_a_wrap(client):
    tcp = _tcpstore()
    tcp.set("max", str(2 ** 63 - 1))
    assert tcp.add("max", 1) == -2 ** 63  # TCPStore wraps around
    s = mt.Store(client)
    s.set("x/max", str(2 ** 63 - 1))
    with pytest.raises(meshd.OutOfRange):
        s.add("x/max", 1)


def test_differs_size_limits(client):
    s = mt.Store(client)
    with pytest.raises(meshd.InvalidArgument, match="1-1024 bytes"):
        s.set("k" * 1025, "v")
    with pytest.raises(meshd.InvalidArgument, match="larger than the limit"):
        s.set("x/huge", b"x" * ((4 << 20) + 1))


def test_wait_and_check_of_many_keys_like_tcpstore(client):
    # A world's worth of keys in one wait (more than one meshd call names): what TCPStore does.
    keys = [f"many/rank{i}" for i in range(2048)]
    tcp, s = _tcpstore(), mt.Store(client)
    assert s.check(keys) is False  # (1.13's TCPStore has no check in Python)
    for store in (tcp, s):
        for k in keys:
            store.set(k, "1")
        store.wait(keys)
        store.wait(keys, datetime.timedelta(seconds=5))
    assert s.check(keys) is True


def test_a_prefix_is_a_keyspace_of_its_own(client):
    base, s = mt.Store(client), mt.Store(client, prefix="space")
    assert s.prefix == "space" and base.prefix == ""
    s.set("k", "v")
    assert base.get("space/k") == b"v" and not base.check(["k"])
    assert s.add("n", 2) == 2 and base.get("space/n") == b"2"
    s.multi_set(["a", "b"], ["1", "2"])
    assert s.multi_get(["a", "b"]) == [b"1", b"2"] and base.check(["space/a", "space/b"])
    s.wait(["a", "b"])
    assert s.compare_set("a", "1", "3") == b"3"
    c = s.clone()
    assert c.prefix == "space" and c.get("k") == b"v"
    assert s.delete_key("k") and not base.check(["space/k"])
    with pytest.raises(mt.StoreTimeoutError, match="'never'"):  # the caller's key, as asked
        s.wait(["never"], datetime.timedelta(milliseconds=200))


def test_differs_keys_are_utf8_text(client):
    tcp = _tcpstore()
    tcp.set(b"\xff-key", "v")  # TCPStore takes any bytes as a key
    assert tcp.get(b"\xff-key") == b"v"
    s = mt.Store(client)
    with pytest.raises(meshd.InvalidArgument, match="not UTF-8"):
        s.set(b"\xff-key", "v")
    s.set("x/\u00e9t\u00e9".encode(), "v")  # UTF-8 bytes are a key
    assert s.get("x/\u00e9t\u00e9") == b"v"


def test_differs_empty_value_is_immediate(client):
    # torch 1.13's TCPStore answers a get of an empty value only after ~200 ms (its client polls);
    # meshd at once.
    s = mt.Store(client)
    s.set("x/empty", "")
    t0 = time.monotonic()
    assert s.get("x/empty") == b""
    assert time.monotonic() - t0 < 0.2


def test_after_generation_end_calls_raise_aborted():
    with meshd_cluster.standalone(gpus=1) as d:
        c = meshd.attach(socket=d.socket, job="store-end", local_rank=0, local_world=1, nnodes=1,
                         timeout=30)
        try:
            s = mt.Store(c, datetime.timedelta(seconds=30))
            s.set("k", "v")
            ended = threading.Event()
            c.on_generation_end(lambda err: ended.set())
            d.stop()  # SIGTERM: the standalone ends every generation on shutdown
            assert ended.wait(10), "the generation did not end"
            with pytest.raises(meshd.Aborted):
                s.get("k")
            with pytest.raises(RuntimeError):  # what torch callers catch
                s.set("k", "w")
        finally:
            c.detach()
