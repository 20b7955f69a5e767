"""The end of a job's generation through the binding: health() raises meshd.Aborted with the
reason, on_generation_end callbacks run (on a meshd thread, GIL held), and what they raise goes to
sys.unraisablehook."""

from __future__ import annotations

import sys
import threading
from typing import List

import pytest

import meshd
import meshd_cluster as mc
from conftest import collective

DEADLINE = 15.0


def test_stopping_the_daemon_ends_the_generation(job) -> None:
    with mc.standalone(gpus=1) as d:
        c = meshd.attach(job=job, socket=d.socket, local_rank=0, local_world=1, timeout=30)
        got: List[meshd.Error] = []
        threads: List[threading.Thread] = []
        done = threading.Event()

        def on_end(e: meshd.Error) -> None:
            got.append(e)
            threads.append(threading.current_thread())
            done.set()

        c.on_generation_end(on_end)
        c.health()  # running
        d.stop()
        assert done.wait(DEADLINE), "the callback did not run"
        assert len(got) == 1 and isinstance(got[0], meshd.Aborted)
        assert got[0].code == "ABORTED"
        assert f"of job '{job}' ended" in str(got[0])
        assert threads[0] is not threading.main_thread()
        with pytest.raises(meshd.Aborted) as info:
            c.health()
        assert str(info.value) == str(got[0])
        with pytest.raises(meshd.Aborted):
            c.key_get("k", timeout=5)
        # Registered after the end: called at once, on this thread.
        late: List[object] = []
        c.on_generation_end(lambda e: late.append((e, threading.current_thread())))
        assert len(late) == 1
        assert isinstance(late[0][0], meshd.Aborted) and late[0][1] is threading.current_thread()
        c.detach()


def test_a_raising_callback_goes_to_unraisablehook(job, monkeypatch) -> None:
    seen: List[object] = []
    done = threading.Event()

    def hook(unraisable) -> None:
        seen.append(unraisable)
        done.set()

    monkeypatch.setattr(sys, "unraisablehook", hook)
    with mc.standalone(gpus=1) as d:
        with meshd.attach(job=job, socket=d.socket, local_rank=0, local_world=1,
                          timeout=30) as c:
            def boom(e: meshd.Error) -> None:
                raise ValueError("from the callback")

            ran_after = threading.Event()
            c.on_generation_end(boom)
            c.on_generation_end(lambda e: ran_after.set())  # the next one still runs
            d.stop()
            assert done.wait(DEADLINE)
            assert ran_after.wait(DEADLINE)
    assert isinstance(seen[0].exc_value, ValueError)
    assert str(seen[0].exc_value) == "from the callback"


def test_detaching_from_the_callback_is_safe(job) -> None:
    with mc.standalone(gpus=1) as d:
        c = meshd.attach(job=job, socket=d.socket, local_rank=0, local_world=1, timeout=30)
        done = threading.Event()

        def detach(e: meshd.Error) -> None:
            c.detach()
            done.set()

        c.on_generation_end(detach)
        d.stop()
        assert done.wait(DEADLINE)
        mc.poll_until(lambda: c.detached, DEADLINE, "the client detached")
        with pytest.raises(meshd.FailedPrecondition, match="detached"):
            c.health()


def test_a_lost_node_ends_the_generation_naming_it() -> None:
    with mc.cluster(nodes=2, gpus=1, heartbeat_interval="100ms",
                    heartbeat_timeout="600ms") as cluster:
        clients = collective(
            [0, 1], lambda n: meshd.attach(job="lost-node", socket=cluster.sockets[n],
                                           local_rank=0, local_world=1, nnodes=2, timeout=30))
        try:
            survivor = next(c for c in clients if c.placement.gpu_uuid.startswith("SIM-node-0"))
            ended = threading.Event()
            survivor.on_generation_end(lambda e: ended.set())
            cluster.kill_agent(1)
            assert ended.wait(DEADLINE), cluster.output()
            with pytest.raises(meshd.Aborted) as info:
                survivor.health()
            assert "node-1" in str(info.value), str(info.value)
        finally:
            for c in clients:
                c.detach()


def test_exiting_with_a_client_still_attached_is_clean(standalone) -> None:
    # No detach, a callback pending: Python exits cleanly and at once (meshd detaches the client
    # at exit; its threads never touch the finalizing interpreter).
    code = r"""
import meshd, sys
c = meshd.attach(timeout=30)
c.on_generation_end(lambda e: print("never", e))
m = c.init_device_mesh((1,), nccl_ids=False)
print("attached", c.rank)
"""
    results = mc.run_workers(standalone.socket, "exit-attached", 1, code=code, timeout=30)
    mc.assert_all_ok(results)
    assert "attached 0" in results[0].stdout and "never" not in results[0].stdout
