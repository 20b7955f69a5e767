"""NCCL unique ids through the binding: minted by each group's first member with the real
ncclGetUniqueId, relayed by meshd, equal on every member. Workers are processes on two nodes."""

from __future__ import annotations

import json
from collections import defaultdict


import meshd
import meshd_cluster as mc
from conftest import collective

WORKER = r"""
import json, meshd
with meshd.attach(timeout=60) as c:
    m = c.init_device_mesh((2, 2), ("dp", "tp"))
    out = {"rank": c.rank, "dims": {}}
    for d in ("dp", "tp"):
        ids = m.nccl_unique_ids(d)
        assert ids == m.nccl_unique_ids(m.mesh_dim_names.index(d) - 2)  # cached, negative dim
        out["dims"][d] = {"ranks": m.get_group_ranks(d), "ids": [i.hex() for i in ids]}
    groups = m.groups()
    out["groups"] = [[g.dims, g.ranks, g.index, g.group_rank, g.group_index, g.key,
                      [i.hex() for i in g.ids]] for g in groups]
    flat = m._flatten()
    out["dims"]["dp_tp"] = {"ranks": flat.get_group_ranks(),
                            "ids": [i.hex() for i in flat.nccl_unique_ids()]}
    # A flattened name from the root and from a slice: the flattened mesh's group (issue 23).
    assert m.nccl_unique_ids("dp_tp") == m["tp"].nccl_unique_ids("dp_tp") == flat.nccl_unique_ids()
    print("RESULT " + json.dumps(out))
"""


def _results(results):
    mc.assert_all_ok(results)
    out = []
    for r in results:
        line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1]
        out.append(json.loads(line[len("RESULT "):]))
    return out


def test_ids_are_equal_across_every_group_and_differ_between_groups(nccl_or_skip) -> None:
    with mc.cluster(nodes=2, gpus=2) as cluster:
        results = _results(mc.run_workers(cluster.sockets, "nccl-ids", 2, code=WORKER,
                                          timeout=120))
    assert sorted(r["rank"] for r in results) == [0, 1, 2, 3]
    for dim in ("dp", "tp", "dp_tp"):
        by_group = defaultdict(set)
        for r in results:
            ids = r["dims"][dim]["ids"]
            assert len(ids) == 1 and len(bytes.fromhex(ids[0])) == 128
            by_group[tuple(r["dims"][dim]["ranks"])].add(ids[0])
        for group, ids in by_group.items():
            assert len(ids) == 1, f"members of {dim} group {group} hold different ids: {ids}"
        all_ids = [next(iter(v)) for v in by_group.values()]
        assert len(set(all_ids)) == len(all_ids), f"two {dim} groups share an id"
    expected_groups = {"dp": [[0, 2], [1, 3]], "tp": [[0, 1], [2, 3]], "dp_tp": [[0, 1, 2, 3]]}
    for dim, groups in expected_groups.items():
        assert sorted({tuple(r["dims"][dim]["ranks"]) for r in results}) == [tuple(g) for g in
                                                                            groups]
    # groups(): one per dim, what nccl_unique_ids returned, keys equal across members.
    for r in results:
        dims, ranks, index, group_rank, group_index, key, ids = r["groups"][1]
        assert dims == ["tp"] and ranks == r["dims"]["tp"]["ranks"]
        assert ranks[index] == r["rank"] and group_rank == sorted(ranks).index(r["rank"])
        assert ids == r["dims"]["tp"]["ids"]
        assert key.endswith(f"/(2):(1)/{group_index}")  # what the group is: tp's layout
    keys = defaultdict(set)
    for r in results:
        for g in r["groups"]:
            keys[(tuple(g[0]), tuple(g[1]))].add(g[5])
    assert all(len(k) == 1 for k in keys.values())


def test_without_nccl_ids_fail_but_the_spec_check_works(standalone) -> None:
    code = r"""
import meshd
with meshd.attach(timeout=60) as c:
    m = c.init_device_mesh((2,), ("x",), nccl_ids=False)
    print("SPEC-ONLY", m)
    try:
        c.init_device_mesh((2,), ("x",))
    except meshd.FailedPrecondition as e:
        print("FAILED_PRECONDITION", e)
"""
    results = mc.run_workers(standalone.socket, "no-nccl", 2, code=code, timeout=120,
                             extra_env={"MESHD_NCCL_LIBRARY": "/nonexistent/libnccl.so.2"})
    mc.assert_all_ok(results)
    for r in results:
        assert "SPEC-ONLY DeviceMesh((x=2,), stride=(1,))" in r.stdout
        assert "FAILED_PRECONDITION" in r.stdout and "NCCL" in r.stdout, r


def test_ranks_asking_for_different_meshes_all_fail_naming_both(standalone, job, attach) -> None:
    clients = attach(standalone.socket, job, 4)

    def init(c: meshd.Client):
        shape = (2, 2) if c.rank < 2 else (4, 1)
        try:
            c.init_device_mesh(shape, ("dp", "tp"), mesh_name="m", nccl_ids=False)
        except meshd.Error as e:
            return e
        return None

    errors = collective(clients, init)
    for e in errors:
        assert isinstance(e, meshd.FailedPrecondition), errors
        assert "dp=2, tp=2" in str(e) and "dp=4, tp=1" in str(e), str(e)
