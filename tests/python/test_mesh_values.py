"""meshd.DeviceMesh as a value, with no daemon (issue 23): DeviceMesh.from_rank_table (PyTorch's
DeviceMesh(device_type, mesh=...): any rank order, any subset of the world), every dim argument
PyTorch's per-dim calls take (index, negative index, name, a flattened name of the root), the root
mesh, and a hash consistent with ==. The expected values are PyTorch's, worked by hand from
device_mesh_semantics.md.
"""

from __future__ import annotations

import pytest

import meshd

PP_DP_TP = "DeviceMesh((pp=2, dp=2, tp=2), stride=(4, 2, 1))"
ARANGE8 = [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]


def mesh3d(rank: int) -> meshd.DeviceMesh:
    """init_device_mesh("cpu", (2, 2, 2), ("pp", "dp", "tp")), as `rank` sees it."""
    return meshd.DeviceMesh.from_rank_table(ARANGE8, ("pp", "dp", "tp"), rank=rank, world_size=8)


def test_every_dim_argument() -> None:
    m = mesh3d(5)  # coordinate (1, 0, 1)
    assert m.get_rank() == 5 and m.client is None
    assert m.get_coordinate() == [1, 0, 1]
    for dims, size, local, group, groups in (
            ((0, -3, "pp"), 2, 1, [1, 5], [[0, 4], [1, 5], [2, 6], [3, 7]]),
            ((1, -2, "dp"), 2, 0, [5, 7], [[0, 2], [1, 3], [4, 6], [5, 7]]),
            ((2, -1, "tp"), 2, 1, [4, 5], [[0, 1], [2, 3], [4, 5], [6, 7]])):
        for d in dims:
            assert m.size(d) == size, d
            assert m.get_local_rank(d) == local, d
            assert m.get_group_ranks(d) == group, d
            assert m.get_all_groups_ranks(d) == groups, d
    assert m.size() == 8


def test_bad_dims_name_the_valid_ones() -> None:
    m = mesh3d(5)
    valid = "(valid: -3..2, a name of ('pp', 'dp', 'tp'))"
    for call in (m.size, m.get_local_rank, m.get_group_ranks, m.get_all_groups_ranks):
        with pytest.raises(meshd.InvalidArgument) as info:
            call(3)
        assert str(info.value) == f"dim 3 is out of range for {PP_DP_TP}, which has 3 dims {valid}"
        with pytest.raises(meshd.InvalidArgument) as info:
            call("nope")
        assert str(info.value) == f"dim 'nope' is not a dim of {PP_DP_TP} {valid}"
    # Past a C int: the same message, not a TypeError.
    with pytest.raises(meshd.InvalidArgument) as info:
        m.size(2**40)
    assert str(info.value) == (f"dim {2**40} is out of range for {PP_DP_TP}, which has 3 dims "
                               f"{valid}")
    with pytest.raises(meshd.InvalidArgument, match="has 3 dims: pass dim"):
        m.get_local_rank()
    with pytest.raises(TypeError):
        m.size(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        m.get_group_ranks(1.0)  # type: ignore[arg-type]
    unnamed = meshd.DeviceMesh.from_rank_table([[0, 1], [2, 3]], rank=0, world_size=4)
    with pytest.raises(meshd.InvalidArgument, match=r"which has no dim names \(valid: -2\.\.1\)"):
        unnamed.size("x")


def test_flattened_names_from_every_mesh_of_the_root() -> None:
    # PyTorch: after mesh["dp", "tp"]._flatten(), get_local_rank("dp_tp") (through get_group) works
    # on every mesh sharing the root, even one without those dims.
    m = mesh3d(5)
    flat = m["dp", "tp"]._flatten()
    assert flat.mesh_dim_names == ("dp_tp",) and flat.mesh == [4, 5, 6, 7]
    for from_ in (m, m["pp"], m["dp", "tp"], flat):
        assert from_.size("dp_tp") == 4
        assert from_.get_local_rank("dp_tp") == 1
        assert from_.get_group_ranks("dp_tp") == [4, 5, 6, 7]
        assert from_.get_all_groups_ranks("dp_tp") == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(meshd.InvalidArgument) as info:
        m["pp"].size("x")
    assert "or a flattened dim of its root: ('dp_tp')" in str(info.value)
    # Another root with the same ranks does not know it.
    with pytest.raises(meshd.InvalidArgument):
        mesh3d(5).size("dp_tp")


def test_subset_and_permuted_tables() -> None:
    # DeviceMesh("cpu", [[4, 5], [6, 7]], mesh_dim_names=("dp", "tp")) in a world of 8.
    r7 = meshd.DeviceMesh.from_rank_table([[4, 5], [6, 7]], ("dp", "tp"), rank=7, world_size=8)
    assert r7.get_coordinate() == [1, 1]
    assert r7.get_all_groups_ranks("dp") == [[4, 6], [5, 7]]
    assert r7.get_group_ranks("dp") == [5, 7] and r7["tp"].mesh == [6, 7]
    r2 = meshd.DeviceMesh.from_rank_table([[4, 5], [6, 7]], ("dp", "tp"), rank=2, world_size=8)
    assert r2.get_coordinate() is None
    assert r2.mesh == [[4, 5], [6, 7]]  # one copy: shown to every rank
    with pytest.raises(meshd.FailedPrecondition):
        r2.get_local_rank("tp")
    with pytest.raises(meshd.FailedPrecondition):
        r2["tp"].mesh  # two copies, rank 2 in neither (PyTorch: RuntimeError)
    assert r2 == r7 and hash(r2) == hash(r7)
    # [[3, 1], [0, 2]]: rank 0's coordinate is (1, 0) but its local ranks are (0, 0).
    p = meshd.DeviceMesh.from_rank_table([[3, 1], [0, 2]], ("a", "b"), rank=0, world_size=4)
    assert p.get_coordinate() == [1, 0]
    assert [p.get_local_rank(d) for d in ("a", "b")] == [0, 0]
    assert p.get_all_groups_ranks("a") == [[3, 0], [1, 2]]
    assert p._flatten().mesh == [3, 1, 0, 2]
    assert p._flatten()._unflatten(0, (2, 2), ("x", "y")).get_all_groups_ranks("x") == [
        [3, 0], [1, 2]]
    # A transposed arange flattens in rank-map order.
    t = meshd.DeviceMesh.from_rank_table([[0, 4], [1, 5], [2, 6], [3, 7]], ("x", "y"), rank=0,
                                         world_size=8)
    assert t._flatten().get_group_ranks() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_table_errors() -> None:
    def make(mesh, names=None, rank=0, world=8):
        return meshd.DeviceMesh.from_rank_table(mesh, names, rank=rank, world_size=world)
    with pytest.raises(meshd.InvalidArgument, match="rank 1 appears twice"):
        make([[0, 1], [1, 2]])
    with pytest.raises(meshd.InvalidArgument, match="outside the world"):
        make([0, 8])
    with pytest.raises(meshd.InvalidArgument, match="ragged"):
        make([[0, 1], [2]])
    with pytest.raises(meshd.InvalidArgument, match="empty list"):
        make([[], []])
    with pytest.raises(meshd.InvalidArgument, match="nested list of ranks"):
        make(3)
    with pytest.raises(meshd.InvalidArgument, match="mixes lists and ranks"):
        make([[0, 1], 2])
    with pytest.raises(TypeError):
        make([0, "1"])
    with pytest.raises(meshd.InvalidArgument, match="rank 8 is outside the world"):
        make([0, 1], rank=8)
    with pytest.raises(meshd.InvalidArgument, match="give one name per dim"):
        make([0, 1], ("a", "b"))


def test_eq_and_hash_as_pytorch() -> None:
    # init_device_mesh((2,2,2)) equals DeviceMesh(arange(8).view(2,2,2)), on every rank.
    a, b = mesh3d(0), mesh3d(5)
    assert a == b and hash(a) == hash(b)
    assert a["tp"] == b["tp"] and hash(a["tp"]) == hash(b["tp"])  # [0,1] and [4,5]: one slice
    assert a["tp"] != a["dp"]
    # A slice never equals a user-built mesh over the same ranks (the rank maps differ).
    user = meshd.DeviceMesh.from_rank_table([4, 5], ("tp",), rank=5, world_size=8)
    assert user != b["tp"]
    # A permuted table is another mesh.
    perm = meshd.DeviceMesh.from_rank_table([[0, 2], [1, 3]], ("a", "b"), rank=0, world_size=4)
    same = meshd.DeviceMesh.from_rank_table([[0, 2], [1, 3]], ("a", "b"), rank=3, world_size=4)
    ident = meshd.DeviceMesh.from_rank_table([[0, 1], [2, 3]], ("a", "b"), rank=0, world_size=4)
    assert perm == same and hash(perm) == hash(same) and perm != ident
    assert len({a, b, a["tp"], b["tp"], perm, same, ident}) == 4
    assert {a["tp"]: "tp"}[b["tp"]] == "tp"


def test_root_mesh() -> None:
    m = mesh3d(5)
    assert m._get_root_mesh() == m
    tp = m["tp"]
    root = tp._get_root_mesh()
    assert root == m and root.get_rank() == 5 and root.key == m.key
    assert tp._get_root_mesh_dim() == 2
    assert m["dp"]._get_root_mesh_dim() == 1
    flat = m["dp", "tp"]._flatten()
    assert flat._get_root_mesh() == m
    assert flat._unflatten(0, (4,), ("w",))._get_root_mesh() == m
    assert meshd.DeviceMesh._concatenate([tp, m["pp"]])._get_root_mesh() == m
    # The flattened name is no dim of the root (PyTorch: KeyError), and a 2-D mesh has no one dim.
    with pytest.raises(meshd.InvalidArgument):
        flat._get_root_mesh_dim()
    with pytest.raises(meshd.InvalidArgument, match="is not 1-D"):
        m["pp", "tp"]._get_root_mesh_dim()
    unnamed = meshd.DeviceMesh.from_rank_table([0, 1], rank=0, world_size=2)
    assert unnamed._get_root_mesh_dim() is None


def test_a_tensor_table() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(8, dtype=torch.int).view(2, 4).t()  # transposed: [[0,4],[1,5],[2,6],[3,7]]
    m = meshd.DeviceMesh.from_rank_table(t, ("x", "y"), rank=6, world_size=8)
    assert m.get_coordinate() == [2, 1]
    assert m.get_group_ranks("x") == [4, 5, 6, 7]
    assert m.mesh.tolist() == t.tolist()  # .mesh is a tensor once torch is imported


def test_sizes_as_pytorch_takes_them_never_coerced() -> None:
    from meshd.mesh import _dims, _names
    assert _dims(8) == [8] and _dims((2, 4)) == [2, 4] and _dims([2, 4]) == [2, 4]
    np = pytest.importorskip("numpy")
    assert _dims(np.array([2, 4])) == [2, 4] and _dims(np.int64(8)) == [8]
    torch = pytest.importorskip("torch")
    assert _dims(torch.Size([2, 4])) == [2, 4] and _dims(torch.tensor([2, 4])) == [2, 4]
    for bad in (1.5, (2.0, 4), True, (2, False), "24", None):
        with pytest.raises(TypeError, match="sequence of ints"):
            _dims(bad)
    assert _names(None) == [] and _names(("dp", "tp")) == ["dp", "tp"]
    with pytest.raises(TypeError, match="single string"):
        _names("dp")
