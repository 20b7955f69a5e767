"""meshd.DeviceMesh: PyTorch's DeviceMesh API over the C++ mesh maths, on 8 ranks of one node
(8 clients attached from threads of this process; meshes made with nccl_ids=False need no NCCL).

The expected values are PyTorch's for init_device_mesh("cpu", (2, 2, 2), ("pp", "dp", "tp")).
"""

from __future__ import annotations

import json
from typing import List

import pytest

import meshd
import meshd_cluster as mc
from conftest import collective

PP_DP_TP = "DeviceMesh((pp=2, dp=2, tp=2), stride=(4, 2, 1))"


@pytest.fixture(scope="module")
def clients(standalone) -> List[meshd.Client]:
    from conftest import attach_all
    cs = attach_all(standalone.socket, "mesh-api", 8)
    yield cs
    for c in cs:
        c.detach()


@pytest.fixture(scope="module")
def meshes(clients) -> List[meshd.DeviceMesh]:
    """Every rank's (pp=2, dp=2, tp=2) mesh, index = rank."""
    return collective(clients, lambda c: c.init_device_mesh((2, 2, 2), ("pp", "dp", "tp"),
                                                           nccl_ids=False))


def test_root_mesh_attributes(meshes) -> None:
    m = meshes[5]
    assert isinstance(m, meshd.DeviceMesh)
    assert m.shape == (2, 2, 2) and m.ndim == 3
    assert m.mesh_dim_names == ("pp", "dp", "tp")
    assert m.mesh == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    assert m.size() == 8
    assert [m.size(d) for d in (0, 1, 2, -1, "pp", "tp")] == [2, 2, 2, 2, 2, 2]
    assert repr(m) == str(m) == PP_DP_TP
    assert m.key == "#0"  # the first unnamed mesh
    assert m.get_rank() == 5 and m.client is not None and m.client.rank == 5
    for r, mr in enumerate(meshes):
        assert mr.get_rank() == r
        assert mr.get_coordinate() == [r // 4, (r // 2) % 2, r % 2]


def test_dims_by_index_negative_index_and_name(meshes) -> None:
    m = meshes[5]  # coordinate (1, 0, 1)
    for dims, local, group in ((("pp", 0, -3), 1, [1, 5]), (("dp", 1, -2), 0, [5, 7]),
                               (("tp", 2, -1), 1, [4, 5])):
        for d in dims:
            assert m.get_local_rank(d) == local, d
            assert m.get_group_ranks(d) == group, d
    assert m.get_all_groups_ranks("pp") == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert m.get_all_groups_ranks(-2) == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert m.get_all_groups_ranks(2) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_dim_errors_are_the_cpp_messages(meshes) -> None:
    m = meshes[5]
    valid = "(valid: -3..2, a name of ('pp', 'dp', 'tp'))"
    with pytest.raises(meshd.InvalidArgument) as info:
        m.size(3)
    assert str(info.value) == f"dim 3 is out of range for {PP_DP_TP}, which has 3 dims {valid}"
    with pytest.raises(meshd.InvalidArgument, match=r"dim -4 is out of range .* \(valid: -3\.\.2,"):
        m.get_local_rank(-4)
    with pytest.raises(meshd.InvalidArgument) as info:
        m.get_group_ranks("nope")
    assert str(info.value) == f"dim 'nope' is not a dim of {PP_DP_TP} {valid}"
    # None is only for 1-D meshes, as in PyTorch.
    with pytest.raises(meshd.InvalidArgument, match="has 3 dims"):
        m.get_local_rank()
    with pytest.raises(TypeError):
        m.size(1.5)  # type: ignore[arg-type]


def test_slicing_by_names(meshes) -> None:
    m = meshes[5]
    tp = m["tp"]
    assert isinstance(tp, meshd.DeviceMesh)
    assert tp.shape == (2,) and tp.mesh_dim_names == ("tp",)
    assert tp.mesh == [4, 5]
    assert tp.get_local_rank() == 1 and tp.get_group_ranks() == [4, 5]
    assert tp.get_coordinate() == [1]
    assert tp.get_rank() == 5
    assert m["dp"].mesh == [5, 7] and m["pp"].mesh == [1, 5]
    pt = m["pp", "tp"]
    assert pt.mesh == [[0, 1], [4, 5]] and pt.mesh_dim_names == ("pp", "tp")
    assert m[("dp", "tp")].mesh == [[4, 5], [6, 7]]
    assert m["pp", "dp", "tp"] == m
    assert pt.key.startswith("#0")  # derived meshes are keyed under their root's key
    assert repr(m["dp", "tp"]) == "DeviceMesh((dp=2, tp=2), stride=(2, 1))"


def test_slicing_errors(meshes) -> None:
    m = meshes[5]
    with pytest.raises(meshd.InvalidArgument) as info:
        m["xx"]
    assert str(info.value) == (f"cannot slice dim 'xx' from {PP_DP_TP}; valid dim names are "
                               "('pp', 'dp', 'tp')")
    with pytest.raises(meshd.InvalidArgument, match="dims must be listed in the root mesh's order"):
        m["tp", "dp"]
    with pytest.raises(TypeError):
        m[0]  # type: ignore[index]


def test_flatten_and_flattened_names(meshes) -> None:
    m = meshes[5]
    flat = m["dp", "tp"]._flatten()
    assert flat.mesh_dim_names == ("dp_tp",) and flat.shape == (4,)
    assert flat.mesh == [4, 5, 6, 7]
    assert flat.get_local_rank() == 1
    # The root knows the flattened name (PyTorch's flatten mapping): slicing and every dim
    # argument take it.
    assert m["dp_tp"] == flat
    assert m.get_group_ranks("dp_tp") == [4, 5, 6, 7]
    assert m.get_local_rank("dp_tp") == 1
    assert m.size("dp_tp") == 4
    assert m.get_all_groups_ranks("dp_tp") == [[0, 1, 2, 3], [4, 5, 6, 7]]
    named = m._flatten("world")
    assert named.shape == (8,) and named.mesh_dim_names == ("world",)
    assert named.mesh == list(range(8))
    assert m["pp", "tp"]._flatten("pp_tp").get_group_ranks() == [0, 1, 4, 5]
    with pytest.raises(meshd.InvalidArgument) as info:
        m._flatten("pp")
    assert "already has a dim of that name" in str(info.value)
    # From a sub-mesh too, as PyTorch's get_group / get_local_rank take it (issue 23); slicing a
    # flattened name still needs the root.
    assert m["tp"].size("dp_tp") == 4
    assert m["pp"].get_group_ranks("dp_tp") == [4, 5, 6, 7]
    assert m["pp"].get_local_rank("dp_tp") == 1
    with pytest.raises(meshd.InvalidArgument):
        m["tp"]["dp_tp"]


def test_unflatten(meshes, clients) -> None:
    m = meshes[5]
    u = m._unflatten("tp", [2, 1], ["a", "b"])
    assert u.mesh_dim_names == ("pp", "dp", "a", "b") and u.shape == (2, 2, 2, 1)
    assert m._unflatten(-1, [2, 1], ["a", "b"]) == u  # negative dim as in PyTorch
    assert m._unflatten(2, [2, 1], ["a", "b"]) == u
    with pytest.raises(meshd.InvalidArgument) as info:
        m._unflatten(1, [3], ["a"])
    assert str(info.value).startswith(f"cannot unflatten dim dp of size 2 of {PP_DP_TP}")
    # A flat mesh of 8 unflattened to (2, 4) is init_device_mesh((2, 4)) (same groups, equal).
    flat8, mesh24 = collective(
        clients, lambda c: (c.init_device_mesh((8,), ("w",), nccl_ids=False),
                            c.init_device_mesh((2, 4), ("dp", "tp"), nccl_ids=False)))[5]
    split = flat8._unflatten("w", [2, 4], ["dp", "tp"])
    assert split == mesh24 and hash(split) == hash(mesh24)
    assert split.get_all_groups_ranks("tp") == mesh24.get_all_groups_ranks("tp") == [
        [0, 1, 2, 3], [4, 5, 6, 7]]


def test_concatenate(meshes) -> None:
    m = meshes[5]
    cat = meshd.DeviceMesh._concatenate([m["dp"], m["tp"]])
    assert cat == m["dp", "tp"]
    assert cat.get_rank() == 5
    assert meshd.DeviceMesh._concatenate([m["pp"], m["tp"]]).mesh_dim_names == ("pp", "tp")
    with pytest.raises(meshd.InvalidArgument, match="concatenate needs at least one mesh"):
        meshd.DeviceMesh._concatenate([])


def test_eq_and_hash(meshes) -> None:
    m0, m5 = meshes[0], meshes[5]
    assert m0 == m5 and hash(m0) == hash(m5)  # one mesh, two ranks' views
    assert m0["tp"] == m5["tp"] and hash(m0["tp"]) == hash(m5["tp"])  # different copies
    assert m5["tp"] != m5["dp"]
    assert m5 != m5["dp", "tp"]
    assert m5 != "DeviceMesh"
    assert len({m0, m5, m0["tp"], m5["tp"], m5["dp"]}) == 3
    assert {m0: 1}[m5] == 1


def test_named_mesh_key_and_init_errors(clients) -> None:
    named = collective(clients, lambda c: c.init_device_mesh((2, 4), ("dp", "tp"),
                                                            mesh_name="named", nccl_ids=False))
    assert all(m.key == "named" for m in named)
    with pytest.raises(meshd.InvalidArgument) as info:
        clients[0].init_device_mesh((3, 3), nccl_ids=False)
    assert str(info.value) == ("a mesh of 9 ranks does not fit in a world of 8 ranks; shrink the "
                               "mesh or grow the world")
    with pytest.raises(meshd.InvalidArgument, match="give one name per dim"):
        clients[0].init_device_mesh(8, ("a", "b"), nccl_ids=False)
    # Nothing is coerced: a float size or a bare string of names is the caller's mistake.
    with pytest.raises(TypeError, match="sequence of ints"):
        clients[0].init_device_mesh((1.5, 8), nccl_ids=False)
    with pytest.raises(TypeError, match=r"write \('dp',\) for one dim"):
        clients[0].init_device_mesh((8,), "dp", nccl_ids=False)
    with pytest.raises(TypeError, match="a mesh dim name is a str"):
        clients[0].init_device_mesh((2, 4), ("dp", 4), nccl_ids=False)


def test_a_rank_outside_a_smaller_mesh(clients) -> None:
    small = collective(clients, lambda c: c.init_device_mesh((4,), ("x",), mesh_name="small",
                                                            nccl_ids=False))
    s = small[5]
    assert s.get_coordinate() is None
    assert s.mesh == [0, 1, 2, 3]  # the only copy
    with pytest.raises(meshd.FailedPrecondition) as info:
        s.get_local_rank()
    assert str(info.value) == ("rank 5 is not in the mesh (its 4 ranks), so it has no group along "
                               "x")
    assert small[2].get_local_rank() == 2 and small[2].get_coordinate() == [2]


def test_mesh_is_a_torch_tensor_once_torch_is_imported(standalone) -> None:
    code = r"""
import json, torch, meshd
with meshd.attach(timeout=30) as c:
    m = c.init_device_mesh((2,), ("x",), nccl_ids=False)
    t = m.mesh
    print(json.dumps([type(t).__name__, str(t.dtype), t.tolist(), m["x"].mesh.tolist()]))
"""
    results = mc.run_workers(standalone.socket, "mesh-torch", 2, code=code, timeout=120)
    mc.assert_all_ok(results)
    for r in results:
        kind, dtype, view, sliced = json.loads(r.stdout.strip().splitlines()[-1])
        assert (kind, dtype, view, sliced) == ("Tensor", "torch.int32", [0, 1], [0, 1])


def test_init_device_mesh_from_ranks(clients) -> None:
    """PyTorch's DeviceMesh(mesh=table) over the job (issue 23): a permutation of a subset."""
    meshes = collective(clients, lambda c: c.init_device_mesh_from_ranks(
        [[3, 1], [0, 2]], ("a", "b"), mesh_name="perm", nccl_ids=False))
    m0, m3, m6 = meshes[0], meshes[3], meshes[6]
    assert m0 == m3 == m6 and m0.key == "perm"
    assert m0.get_coordinate() == [1, 0] and m3.get_coordinate() == [0, 0]
    assert m6.get_coordinate() is None  # rank 6 is not in the table
    assert [m0.get_local_rank(d) for d in ("a", "b")] == [0, 0]
    assert [m3.get_local_rank(d) for d in (0, -1)] == [1, 1]
    assert m0.get_all_groups_ranks("a") == [[3, 0], [1, 2]]
    assert m0.mesh == m6.mesh == [[3, 1], [0, 2]]
    assert m0._flatten().get_group_ranks() == [3, 1, 0, 2]
    assert m0 == meshd.DeviceMesh.from_rank_table([[3, 1], [0, 2]], ("a", "b"), rank=0,
                                                  world_size=8)
    with pytest.raises(meshd.InvalidArgument, match="rank 1 appears twice"):
        clients[0].init_device_mesh_from_ranks([[0, 1], [1, 2]], nccl_ids=False)
    with pytest.raises(meshd.InvalidArgument, match="ragged"):
        clients[0].init_device_mesh_from_ranks([[0, 1], [2]], nccl_ids=False)


def test_mesh_from_group(clients, nccl_or_skip) -> None:
    """PyTorch's DeviceMesh.from_group (issue 23): the group's own ids, no call."""
    meshes = collective(clients, lambda c: c.init_device_mesh((2, 4), ("dp", "tp"),
                                                             mesh_name="for-from-group"))
    for r in (0, 5):
        m, c = meshes[r], clients[r]
        tp = m.groups()[1]
        g = c.mesh_from_group(tp, mesh_dim_names=("tp",))
        assert g.mesh == tp.ranks and g.mesh_dim_names == ("tp",)
        assert g.get_coordinate() == [tp.index]
        assert g.nccl_unique_ids() == tp.ids == m.nccl_unique_ids("tp")
        assert c.mesh_from_group(tp, tp.ranks).mesh_dim_names is None
        with pytest.raises(meshd.InvalidArgument, match="Invalid mesh"):
            c.mesh_from_group(tp, list(reversed(tp.ranks)))
        with pytest.raises(TypeError):
            c.mesh_from_group(tp.ranks)  # type: ignore[arg-type]
