"""Ctrl-C during blocking calls: the call is interrupted (meshd::Interrupter) and
KeyboardInterrupt arrives within a second; Python signal handlers run while a call waits.

A signal is only sent once the call is known to be in flight inside meshd: the job shows the
worker joined (attach), or the coordinator counts one more waiter (a key wait).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

import meshd
import meshd_cluster as mc

#: How soon after SIGINT the KeyboardInterrupt must arrive.
LATENCY = 1.0


def _joined(address: str, job: str) -> bool:
    r = mc.meshctl("--json", "job", job, coordinator=address)
    return r.returncode == 0 and len(json.loads(r.stdout).get("members", [])) == 1


def _waiters(address: str) -> int:
    r = mc.meshctl("--json", "status", coordinator=address)
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)["waiters"])


def test_ctrl_c_interrupts_attach_in_a_worker_process(standalone, job) -> None:
    code = r"""
import meshd, sys, time
try:
    meshd.attach(timeout=120)   # a job of 2 nodes, where only one ever comes
except KeyboardInterrupt:
    print("KeyboardInterrupt at", time.monotonic(), flush=True)
    sys.exit(3)
"""
    with mc.start_workers(standalone.socket, job, 1, code=code, nnodes=2) as w:
        mc.poll_until(lambda: _joined(standalone.address, job), 20, "the worker's join")
        sent = time.monotonic()
        w.procs[0].send_signal(signal.SIGINT)
        result = w.wait(20)[0]
    assert result.returncode == 3, result
    got = float(result.stdout.split("KeyboardInterrupt at")[1].split()[0])
    assert got - sent < LATENCY, f"KeyboardInterrupt {got - sent:.3f}s after SIGINT"


def test_ctrl_c_interrupts_attach_in_this_process(standalone, job) -> None:
    sent = []
    stop = threading.Event()

    def interrupt() -> None:
        try:
            mc.poll_until(lambda: stop.is_set() or _joined(standalone.address, job), 20,
                          "the join")
        except TimeoutError:
            return
        if not stop.is_set():
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                         nnodes=2, timeout=60)
        got = time.monotonic()
    finally:
        stop.set()
        t.join()
    assert sent and got - sent[0] < LATENCY, f"KeyboardInterrupt {got - sent[0]:.3f}s late"
    # The same process attaches again at once: its new call takes the place the interrupted one
    # held (not ALREADY_EXISTS, though the agent's join for it is still held by the coordinator),
    # and waits for the second node, which never comes, until its own (client-side) deadline.
    with pytest.raises(meshd.DeadlineExceeded):
        meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1, nnodes=2,
                     timeout=1)


def test_ctrl_c_interrupts_a_key_wait_and_the_client_stays_usable(standalone, job) -> None:
    # The worker goes on to its wait when the test sends SIGUSR1 (blocked, then waited for).
    code = r"""
import meshd, signal, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
c = meshd.attach(timeout=60)
print("attached", flush=True)
signal.sigwait({signal.SIGUSR1})
try:
    c.key_get("never", timeout=60)
except KeyboardInterrupt:
    print("KeyboardInterrupt at", time.monotonic(), flush=True)
c.key_set("after", "ok")
print("usable", c.key_get("after").decode(), flush=True)
c.detach()
"""
    with mc.start_workers(standalone.socket, job, 1, code=code) as w:
        w.procs[0].wait_for_line("attached", 20)
        before = _waiters(standalone.address)
        w.procs[0].send_signal(signal.SIGUSR1)
        mc.poll_until(lambda: _waiters(standalone.address) > before, 20, "the key wait")
        sent = time.monotonic()
        w.procs[0].send_signal(signal.SIGINT)
        result = w.wait(20)[0]
    assert result.returncode == 0, result
    got = float(result.stdout.split("KeyboardInterrupt at")[1].split()[0])
    assert got - sent < LATENCY, f"KeyboardInterrupt {got - sent:.3f}s after SIGINT"
    assert "usable ok" in result.stdout


def test_signal_handlers_run_while_a_call_waits(standalone, job) -> None:
    # A SIGUSR1 handler runs while the main thread waits in key_get, and may itself call meshd:
    # here it sets the very key the main thread waits for.
    with meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                      timeout=30) as c:
        ran = []

        def handler(signum, frame) -> None:
            ran.append(signum)
            c.key_set("from-handler", b"set")

        before = _waiters(standalone.address)
        previous = signal.signal(signal.SIGUSR1, handler)
        try:
            def send() -> None:
                mc.poll_until(lambda: _waiters(standalone.address) > before, 20, "the key wait")
                os.kill(os.getpid(), signal.SIGUSR1)

            t = threading.Thread(target=send)
            t.start()
            assert c.key_get("from-handler", timeout=20) == b"set"
            t.join()
        finally:
            signal.signal(signal.SIGUSR1, previous)
        assert ran == [signal.SIGUSR1]


def test_a_handler_that_raises_interrupts_the_call(standalone, job) -> None:
    class Stop(Exception):
        pass

    def handler(signum, frame) -> None:
        raise Stop()

    with meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                      timeout=30) as c:
        before = _waiters(standalone.address)
        previous = signal.signal(signal.SIGUSR1, handler)
        try:
            def send() -> None:
                mc.poll_until(lambda: _waiters(standalone.address) > before, 20, "the key wait")
                os.kill(os.getpid(), signal.SIGUSR1)

            t = threading.Thread(target=send)
            t.start()
            with pytest.raises(Stop):
                c.key_wait(["never"], timeout=20)
            t.join()
        finally:
            signal.signal(signal.SIGUSR1, previous)
        c.key_set("still", "usable")
        assert c.key_get("still") == b"usable"
