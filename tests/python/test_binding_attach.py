"""meshd.attach and the Client's placement and lifetime, against real meshd daemons."""

from __future__ import annotations

import datetime
import os

import pytest

import meshd
import meshd_cluster as mc
from conftest import attach_all, collective


def test_attach_explicit_arguments_gives_the_placement(standalone, job, attach) -> None:
    clients = attach(standalone.socket, job, 2)
    for r, c in enumerate(clients):
        p = c.placement
        assert isinstance(p, meshd.Placement)
        assert (p.rank, p.world_size, p.local_rank, p.local_world_size) == (r, 2, r, 2)
        assert (p.node_rank, p.num_nodes) == (0, 1)
        assert (c.rank, c.world_size, c.local_rank, c.local_world_size) == (r, 2, r, 2)
        assert (c.node_rank, c.num_nodes, c.generation) == (0, 1, p.generation)
        assert p.generation >= 1
        assert p.gpu_index == r
        assert p.gpu_uuid == f"SIM-node-0-{r}"
        assert p.simulated is True
        assert p.gpu_pci_bus_id == ""  # simulated
        assert isinstance(p.gpu_name, str) and p.gpu_name
        assert p.nvlink_clique == ""
        with pytest.raises(Exception):
            p.rank = 5  # type: ignore[misc]  # frozen
        assert f"rank {r}/2" in repr(c)


def test_attach_takes_every_default_from_the_environment(standalone, job, monkeypatch) -> None:
    monkeypatch.setenv("MESHD_JOB", job)
    monkeypatch.setenv("MESHD_SOCKET", standalone.socket)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("MESHD_NNODES", "1")
    with meshd.attach(timeout=30) as c:
        assert (c.rank, c.world_size, c.local_rank, c.local_world_size) == (0, 1, 0, 1)
        assert c.num_nodes == 1


def test_missing_job_is_invalid_argument_naming_meshd_job(standalone) -> None:
    with pytest.raises(meshd.InvalidArgument, match="MESHD_JOB") as info:
        meshd.attach(socket=standalone.socket, local_rank=0, local_world=1)
    assert info.value.code == "INVALID_ARGUMENT"
    assert str(info.value) == "no job: pass job= to attach() or set MESHD_JOB"


def test_missing_local_rank_and_world_name_their_variables(standalone, job) -> None:
    with pytest.raises(meshd.InvalidArgument, match="LOCAL_RANK"):
        meshd.attach(job=job, socket=standalone.socket, local_world=1)
    with pytest.raises(meshd.InvalidArgument, match="LOCAL_WORLD_SIZE"):
        meshd.attach(job=job, socket=standalone.socket, local_rank=0)


def test_bad_nnodes_is_invalid_argument(standalone, job, monkeypatch) -> None:
    for bad in ("x", "1:2:3", "", (2, 1), 0, "0"):
        with pytest.raises(meshd.InvalidArgument):
            meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                         nnodes=bad)
    monkeypatch.setenv("MESHD_NNODES", "two")
    with pytest.raises(meshd.InvalidArgument, match="MESHD_NNODES='two' must be N or MIN:MAX"):
        meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1)


@pytest.mark.parametrize("nnodes", [1, "1", "1:1", (1, 1)])
def test_nnodes_forms(standalone, job, nnodes) -> None:
    with meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                      nnodes=nnodes, timeout=30) as c:
        assert c.num_nodes == 1


def test_elastic_job_closes_at_min_after_the_last_call_window(standalone, job) -> None:
    with meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                      nnodes="1:2", timeout=30) as c:
        assert (c.num_nodes, c.world_size) == (1, 1)


def test_no_agent_is_unavailable(job) -> None:
    d = mc.short_tempdir()
    try:
        with pytest.raises(meshd.Unavailable, match="no meshd agent socket at"):
            meshd.attach(job=job, socket=os.path.join(d, "none.sock"), local_rank=0,
                         local_world=1, timeout=5)
    finally:
        os.rmdir(d)


def test_timeout_accepts_seconds_and_timedelta(standalone, job) -> None:
    with meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                      timeout=datetime.timedelta(seconds=20)) as c:
        assert c.timeout == pytest.approx(20.0)
        c.timeout = datetime.timedelta(milliseconds=1500)
        assert c.timeout == pytest.approx(1.5)
        c.timeout = 7
        assert c.timeout == pytest.approx(7.0)
        with pytest.raises(TypeError, match="not None"):
            c.timeout = None  # type: ignore[assignment]
        with pytest.raises(meshd.InvalidArgument, match="timeout must be positive"):
            c.timeout = -5
        assert c.timeout == pytest.approx(7.0)
    with pytest.raises(meshd.InvalidArgument, match="timeout must be positive"):
        meshd.attach(job=job + "-z", socket=standalone.socket, local_rank=0, local_world=1,
                     timeout=0)
    # None: the default (600 s).
    with meshd.attach(job=job + "-n", socket=standalone.socket, local_rank=0, local_world=1,
                      timeout=None) as c:
        assert c.timeout == pytest.approx(600.0)


def test_detach_is_idempotent_and_later_calls_fail_with_detached(standalone, job) -> None:
    with meshd.attach(job=job, socket=standalone.socket, local_rank=0, local_world=1,
                      timeout=30) as c:
        c.health()
        assert not c.detached
    assert c.detached
    c.detach()  # again: nothing
    calls = [
        lambda: c.health(),
        lambda: c.key_set("k", b"v"),
        lambda: c.key_get("k"),
        lambda: c.key_count(),
        lambda: c.init_device_mesh((1,)),
        lambda: c.on_generation_end(lambda e: None),
    ]
    for call in calls:
        with pytest.raises(meshd.FailedPrecondition) as info:
            call()
        assert str(info.value) == "detached"
    # The placement stays readable.
    assert c.rank == 0 and c.placement.world_size == 1


def test_a_detached_worker_left_cleanly_so_its_job_can_attach_again(standalone, job) -> None:
    # After every worker detached, the same workers attach again, at the same ranks.
    first = attach_all(standalone.socket, job, 2)
    for c in first:
        c.detach()
    again = attach_all(standalone.socket, job, 2)
    try:
        assert [c.rank for c in again] == [0, 1]
        for c in again:
            c.health()
    finally:
        for c in again:
            c.detach()


def test_two_nodes_get_topology_ranks() -> None:
    with mc.cluster(nodes=2, gpus=2) as cluster:
        def one(where):
            node, r = where
            return meshd.attach(job="two-nodes", socket=cluster.sockets[node], local_rank=r,
                                local_world=2, nnodes=2, timeout=30)
        clients = collective([(n, r) for n in range(2) for r in range(2)], one)
        try:
            seen = set()
            for c in clients:
                p = c.placement
                assert (p.world_size, p.num_nodes, p.local_world_size) == (4, 2, 2)
                assert p.rank == p.node_rank * 2 + p.local_rank
                assert p.gpu_uuid.startswith("SIM-node-")
                seen.add(p.rank)
            assert seen == {0, 1, 2, 3}
            assert len({c.generation for c in clients}) == 1
        finally:
            for c in clients:
                c.detach()
