"""A node lost under a running torch job reaches the other workers' Python side at once.

A coordinator with short heartbeats (--heartbeat-interval 200ms --heartbeat-timeout 1s), 2 agents x
4 simulated GPUs, 8 worker processes (torch_worker.py generation_end) in one gloo default group
over meshd://. Once all are READY, node 1's agent gets SIGKILL — its workers stay alive and silent,
so gloo itself notices nothing. Within the heartbeat timeout + 1 s:

* node 0, local ranks 0-1: meshd.torch.on_generation_end's callback ran, and
  meshd.torch.client().health() raises meshd.Aborted with the reason;
* node 0, local ranks 2-3 (meshd://?abort_on_generation_end=1), blocked in a gloo recv from a
  node-1 rank that never sends: torch 1.13 cannot abort a gloo group, so the process exits with
  meshd.torch.GENERATION_END_EXIT_CODE (75) and says why (on torch 2.x with NCCL it would abort the
  groups instead; gloo exits there too).

Then, in this process as a one-rank job: the node's agent dies and comes back, and destroy +
init_process_group(meshd://) joins the job's next generation, on a fresh store.
"""

from __future__ import annotations

import subprocess
import threading
import time

import meshd_cluster
from torch_support import WORKER, import_torch, tagged_line

torch, mt = import_torch()

HEARTBEAT_TIMEOUT_S = 1.0
BOUND_S = HEARTBEAT_TIMEOUT_S + 1.0


def test_agent_killed_reaches_python_within_heartbeat_timeout_plus_one_second():
    with meshd_cluster.cluster(nodes=2, gpus=4, heartbeat_interval="200ms",
                               heartbeat_timeout="1s") as c:
        with meshd_cluster.start_workers(c.sockets, "torch-genend", 4, script=WORKER,
                                         args=["generation_end"]) as workers:
            ready = [tagged_line(p, "READY", 120) for p in workers.procs]
            roles = {r["rank"]: r["role"] for r in ready}
            assert sorted(roles) == list(range(8))
            by_role = {role: [p for p, r in zip(workers.procs, ready) if r["role"] == role]
                       for role in ("callback", "abort", "silent")}
            assert [len(by_role[k]) for k in ("callback", "abort", "silent")] == [2, 2, 4], ready

            killed_at = time.time()
            c.kill_agent(1)
            # The abort workers' exits are watched from now on, all at once, so that the time
            # measured is theirs and not how long the checks below took.
            exited_at = {}

            def watch_exit(p):
                try:
                    p.proc.wait(BOUND_S + 10)
                    exited_at[p.name] = time.time()
                except subprocess.TimeoutExpired:
                    pass  # reported below

            watchers = [threading.Thread(target=watch_exit, args=(p,)) for p in by_role["abort"]]
            for t in watchers:
                t.start()

            # Callback workers: the callback's timestamp and health()'s error.
            for p in by_role["callback"]:
                ended = tagged_line(p, "ENDED", BOUND_S + 10)
                took = ended["callback_time"] - killed_at
                assert took < BOUND_S, f"callback {took:.2f}s after the kill:\n{p.output()}"
                assert ended["health_type"] == "Aborted", ended
                assert ended["callback_type"] == "Aborted", ended
                assert "node-1" in ended["health_error"], ended
                print(f"{p.name}: callback {took:.3f}s after SIGKILL: {ended['health_error']}")

            # Abort workers: exit 75 with the reason, though their recv's peer still runs.
            for t in watchers:
                t.join()
            for p in by_role["abort"]:
                assert p.name in exited_at, f"{p.name} did not exit:\n{p.output()}"
                code = p.returncode
                took = exited_at[p.name] - killed_at
                assert code == mt.GENERATION_END_EXIT_CODE, p.output()
                assert took < BOUND_S + 0.1, f"{p.name} exited {took:.2f}s after the kill"
                err = "\n".join(p.err_lines)
                assert "exiting with code 75" in err and "node-1" in err, p.output()
                print(f"{p.name}: exited {code} {took:.3f}s after SIGKILL")

            # The silent workers never exited: it was meshd, not gloo, that told node 0.
            assert all(p.running() for p in by_role["silent"])


def test_init_again_after_the_generation_ended_joins_the_next_generation():
    # In this process, one rank: the node's agent dies (generation 1 ends), comes back, and
    # destroy + init_process_group(meshd://) attaches again, into generation 2, on a fresh store.
    import datetime
    import threading

    import torch.distributed as dist

    import meshd

    with meshd_cluster.cluster(nodes=1, gpus=1, heartbeat_interval="200ms",
                               heartbeat_timeout="1s") as c:
        url = f"meshd://{c.sockets[0]}?job=torch-reattach&nnodes=1&local_rank=0&local_world=1"
        timeout = datetime.timedelta(seconds=30)
        ended = threading.Event()
        mt.on_generation_end(lambda err: ended.set())
        try:
            dist.init_process_group("gloo", init_method=url, timeout=timeout)
            first = mt.client()
            mt.Store(first).set("from-generation-1", "x")
            c.kill_agent(0)
            assert ended.wait(HEARTBEAT_TIMEOUT_S + 10), "the generation did not end"
            try:
                first.health()
                raise AssertionError("health() passed after the generation ended")
            except meshd.Aborted:
                pass
            c.add_agent("node-0")  # the node comes back
            dist.destroy_process_group()
            dist.init_process_group("gloo", init_method=url, timeout=timeout)
            second = mt.client()
            assert second is not first and second.generation > first.generation
            assert not mt.Store(second).check(["from-generation-1"])  # a new generation's store
            t = torch.ones(1)
            dist.all_reduce(t)
            assert t.item() == 1.0
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
            mt.detach()
