"""The generation's key-value store through the binding (TCPStore semantics, done by C++)."""

from __future__ import annotations

import datetime
import json
import threading

import pytest

import meshd
import meshd_cluster as mc
from conftest import collective


def _waiters(address: str) -> int:
    """Calls held by the coordinator (a key wait is one)."""
    r = mc.meshctl("--json", "status", coordinator=address)
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)["waiters"])


@pytest.fixture
def client(standalone, job):
    with meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                      timeout=30) as c:
        yield c


def test_set_and_get_bytes_and_str(client) -> None:
    client.key_set("s", "héllo")
    assert client.key_get("s") == "héllo".encode()
    client.key_set("b", bytes(range(256)))
    assert client.key_get("b") == bytes(range(256))
    client.key_set("ba", bytearray(b"xy"))
    assert client.key_get("ba") == b"xy"
    client.key_set("e", b"")
    assert client.key_get("e") == b""
    client.key_set("s", b"again")
    assert client.key_get("s") == b"again"


def test_get_waits_for_the_key_with_the_gil_released(client) -> None:
    # A thread blocks in key_get on this client while the main thread sets the key: were the GIL
    # held by the waiting call, the main thread could not run.
    got = []
    t = threading.Thread(target=lambda: got.append(client.key_get("later", timeout=20)))
    t.start()
    client.key_set("later", b"now")
    t.join(20)
    assert not t.is_alive() and got == [b"now"]


def test_add(client) -> None:
    assert client.key_add("n", 2) == 2
    assert client.key_add("n", -5) == -3
    assert client.key_get("n") == b"-3"
    client.key_set("text", "abc")
    with pytest.raises(meshd.InvalidArgument, match="holds a value that is not an integer"):
        client.key_add("text", 1)
    client.key_add("big", 2**63 - 1)
    with pytest.raises(meshd.OutOfRange, match="overflows a 64-bit counter"):
        client.key_add("big", 1)


def test_compare_set_has_tcpstore_semantics(client) -> None:
    assert client.key_compare_set("k", "", "first") == b"first"   # absent, expected "": set
    assert client.key_compare_set("k", "other", "x") == b"first"  # mismatch: the current value
    assert client.key_compare_set("k", b"first", b"second") == b"second"  # match: swapped
    assert client.key_get("k") == b"second"
    assert client.key_compare_set("absent", "e", "d") == b"e"  # absent, expected set: expected
    assert not client.key_check(["absent"])
    client.key_set("empty", b"")
    assert client.key_compare_set("empty", "", "filled") == b"filled"


def test_compare_swap_says_whether_this_call_stored(client) -> None:
    assert client.key_compare_swap("s", "", "v") == (True, b"v")
    # Another caller already stored the same bytes: the value matches, but this call did not swap.
    assert client.key_compare_swap("s", "", "v") == (False, b"v")
    assert client.key_compare_swap("s", "v", "w") == (True, b"w")
    assert client.key_compare_swap("gone", "e", "d") == (False, b"e")


def test_wait_check_delete_count(client) -> None:
    assert client.key_count() == 0
    assert client.key_check(["a", "b"]) is False
    client.key_set("a", "1")
    client.key_set("b", "2")
    client.key_wait(["a", "b"])
    client.key_wait("a")  # one key as a str
    assert client.key_check(["a", "b"]) is True
    assert client.key_count() == 2
    assert client.key_delete("a") is True
    assert client.key_delete("a") is False
    assert client.key_count() == 1


def test_deadlines_raise_deadline_exceeded_naming_the_key(client, job) -> None:
    with pytest.raises(meshd.DeadlineExceeded) as info:
        client.key_get("absent", timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert str(info.value).startswith(f"cannot get key 'absent' of job '{job}' within 200ms")
    with pytest.raises(TimeoutError, match="cannot wait for keys 'x', 'y'"):
        client.key_wait(["x", "y"], timeout=datetime.timedelta(milliseconds=200))
    client.timeout = 0.2  # the default of every key call
    with pytest.raises(meshd.DeadlineExceeded, match="within 200ms"):
        client.key_get("absent")
    with pytest.raises(meshd.DeadlineExceeded, match="timeout is not positive"):
        client.key_get("absent", timeout=0)


def test_bad_keys_and_values(client) -> None:
    with pytest.raises(meshd.InvalidArgument, match="must be 1-1024 bytes"):
        client.key_set("", "v")
    with pytest.raises(meshd.InvalidArgument, match=r"\(1025 bytes\) must be 1-1024 bytes"):
        client.key_set("k" * 1025, "v")
    with pytest.raises(meshd.InvalidArgument, match="larger than the limit of 4194304"):
        client.key_set("big", b"x" * (4 * 1024 * 1024 + 1))
    with pytest.raises(TypeError):
        client.key_set(b"bytes-key", "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.key_set("k", 5)  # type: ignore[arg-type]
    # Checked before anything is sent: the same error for any size past the limit (the value is
    # never shipped to the agent), for compare_set's values too.
    for call in (lambda: client.key_set("big", b"x" * (64 << 20)),
                 lambda: client.key_compare_set("big", b"", b"x" * ((4 << 20) + 1)),
                 lambda: client.key_compare_set("big", b"x" * (6 << 20), b"v")):
        with pytest.raises(meshd.InvalidArgument, match="larger than the limit of 4194304"):
            call()
    with pytest.raises(meshd.InvalidArgument, match="together larger than the limit"):
        client.key_compare_set("big", b"x" * (3 << 20), b"y" * (3 << 20))  # each fits alone
    assert not client.key_check(["big"])
    with pytest.raises(meshd.InvalidArgument, match="not UTF-8"):
        client.key_set("lone\udc80surrogate", "v")
    with pytest.raises(meshd.InvalidArgument, match="does not fit in 64 bits"):
        client.key_add("n64", 2 ** 63)
    with pytest.raises(TypeError):
        client.key_add("n64", 1.5)  # type: ignore[arg-type]
    # InvalidArgument is a ValueError too.
    with pytest.raises(ValueError):
        client.key_set("", "v")


def test_wait_and_check_of_no_keys_and_of_many(client) -> None:
    client.key_wait([])  # TCPStore: at once
    assert client.key_check([]) is True
    keys = [f"rank{i}" for i in range(2500)]  # more than one call names (1,024)
    assert client.key_check(keys) is False
    for k in keys[:-1]:
        client.key_set(k, b"1")
    assert client.key_check(keys) is False  # the missing one is in the last part
    with pytest.raises(meshd.DeadlineExceeded):
        client.key_wait(keys, timeout=0.3)
    client.key_set(keys[-1], b"1")
    assert client.key_check(keys) is True
    client.key_wait(keys)


def test_a_value_of_the_largest_size_round_trips(client) -> None:
    client.key_set("max", b"x" * (4 * 1024 * 1024))
    assert len(client.key_get("max")) == 4 * 1024 * 1024


def test_threads_share_a_client(client) -> None:
    results = collective(list(range(8)), lambda _: client.key_add("counter", 1))
    assert sorted(results) == list(range(1, 9))


def test_processes_share_the_generations_store(standalone) -> None:
    code = r"""
import meshd
with meshd.attach(timeout=60) as c:
    c.key_set(f"rank{c.rank}", str(c.rank))
    n = c.key_add("arrived", 1)
    c.key_wait([f"rank{r}" for r in range(c.world_size)])
    c.key_wait(["arrived"])
    values = [c.key_get(f"rank{r}").decode() for r in range(c.world_size)]
    print("RESULT", n, ",".join(values))
    # a barrier, so that nobody detaches (ending its part of the job) before all have read
    if c.key_add("done", 1) == c.world_size:
        c.key_set("all-done", "1")
    c.key_wait(["all-done"])
"""
    results = mc.run_workers(standalone.socket, "kv-procs", 4, code=code, timeout=60)
    mc.assert_all_ok(results)
    ns = []
    for r in results:
        line = [l for l in r.stdout.splitlines() if l.startswith("RESULT")][-1]
        _, n, values = line.split()
        ns.append(int(n))
        assert values == "0,1,2,3"
    assert sorted(ns) == [1, 2, 3, 4]


def test_detach_cancels_a_call_in_flight_on_another_thread(standalone, job) -> None:
    c = meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1, timeout=30)
    got = []

    def wait() -> None:
        try:
            c.key_get("never", timeout=60)
        except meshd.Error as e:
            got.append(e)

    before = _waiters(standalone.address)
    t = threading.Thread(target=wait)
    t.start()
    mc.poll_until(lambda: _waiters(standalone.address) > before, 20, "the key wait")
    c.detach()
    t.join(10)
    assert not t.is_alive(), "key_get still waits after detach"
    assert len(got) == 1 and isinstance(got[0], meshd.Cancelled), got


def test_store_limits_from_the_coordinators_flags(job) -> None:
    """--kv-max-keys/--kv-max-bytes bound a generation's store: past one a set is refused with
    ResourceExhausted naming the flag, and nothing is stored."""
    with mc.standalone(gpus=1, extra_args=["--kv-max-keys", "2", "--kv-max-bytes", "1000"]) as d:
        with meshd.attach(job=job, socket=d.socket, local_rank=0, local_world=1, timeout=30) as c:
            c.key_set("a", b"1")
            c.key_set("b", b"2")
            with pytest.raises(meshd.ResourceExhausted, match="--kv-max-keys 2"):
                c.key_set("c", b"3")
            assert c.key_count() == 2
            with pytest.raises(meshd.ResourceExhausted, match="--kv-max-bytes 1000"):
                c.key_set("a", bytes(2000))
            assert c.key_get("a") == b"1"
            assert c.key_delete("b")
            c.key_set("c", b"3")


def _store_of(address: str, job: str) -> dict:
    r = mc.meshctl("--json", "job", job, coordinator=address)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["store"]


def test_meshctl_job_shows_the_store_and_the_keys_waited_for(standalone, client, job) -> None:
    """An operator's first look at a start that hangs: what the generation's store holds, and
    which keys operations wait for (`meshctl job`, GetJob; meshctl on the coordinator's host
    without TLS is an operator)."""
    client.key_set("present", b"x" * 100)
    store = _store_of(standalone.address, job)
    assert int(store["keys"]) == 1 and int(store["bytes"]) >= 107 and int(store["waiting"]) == 0
    waits = [threading.Thread(target=client.key_get, args=(k,), kwargs={"timeout": 20})
             for k in ("never-set", "set-later")]
    for t in waits:
        t.start()
    mc.poll_until(lambda: int(_store_of(standalone.address, job)["waiting"]) == 2, 20,
                  "two held gets")
    store = _store_of(standalone.address, job)
    assert sorted(w["key"] for w in store["most_waited"]) == ["never-set", "set-later"]
    table = mc.meshctl("job", job, coordinator=standalone.address).stdout
    assert "1 key, " in table and "2 operations waiting" in table, table
    assert "'never-set'" in table and "WAITING  FOR KEY" in table, table
    client.key_set("set-later", b"1")
    client.key_set("never-set", b"1")
    for t in waits:
        t.join(20)
    assert _store_of(standalone.address, job)["most_waited"] == []
