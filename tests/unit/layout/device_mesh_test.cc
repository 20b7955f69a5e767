// DeviceMesh construction and per-rank queries: the semantics doc's sections 3-6, 12 and 16.
#include "common/layout/device_mesh.h"

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/layout/mesh_ops.h"
#include "tests/unit/layout/mesh_test_util.h"

namespace meshd::layout {
namespace {

using ::meshd::layout::testing::FromTable;
using ::meshd::layout::testing::GroupRows;
using ::meshd::layout::testing::Init;
using ::meshd::layout::testing::Must;
using ::meshd::layout::testing::Rows;
using ::meshd::layout::testing::ViewValues;

TEST(DeviceMeshGroups, TwoDims_PyTorchOrder) {
  const DeviceMesh m = Init({2, 4}, {"dp", "tp"});
  EXPECT_EQ(GroupRows(m, 0), (Rows{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(GroupRows(m, 1), (Rows{{0, 1, 2, 3}, {4, 5, 6, 7}}));
}

TEST(DeviceMeshGroups, ThreeDims_ComplementOrderNotSwapdims) {
  const DeviceMesh m = Init({2, 2, 2}, {"dp", "cp", "tp"});
  EXPECT_EQ(GroupRows(m, 0),
            (Rows{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));  // not [0,4],[2,6],[1,5],[3,7]
  EXPECT_EQ(GroupRows(m, 1), (Rows{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(GroupRows(m, 2), (Rows{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
}

TEST(DeviceMeshGroups, CustomRankTable) {
  const DeviceMesh m = FromTable({2, 2}, {0, 2, 1, 3}, {}, 4);
  EXPECT_EQ(GroupRows(m, 0), (Rows{{0, 1}, {2, 3}}));
  EXPECT_EQ(GroupRows(m, 1), (Rows{{0, 2}, {1, 3}}));
}

TEST(DeviceMeshGroups, SizeOneDim_SingletonPerRank) {
  const DeviceMesh m = Init({2, 1, 2}, {"a", "b", "c"});
  EXPECT_EQ(GroupRows(m, 1), (Rows{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(m.num_groups(1), 4);
}

TEST(DeviceMeshGroups, GroupOfMatchesTableRow) {
  const DeviceMesh m = Init({2, 2, 2}, {"dp", "cp", "tp"});
  for (int d = 0; d < 3; ++d) {
    const Rows rows = GroupRows(m, d);
    for (int64_t r = 0; r < 8; ++r) {
      const RankGroup g = Must(m.GroupOf(r, d));
      EXPECT_EQ(g.ranks, rows[g.index]) << "rank " << r << " dim " << d;
    }
  }
}

TEST(DeviceMeshCoordinate, IdentityMesh) {
  const DeviceMesh m = Init({2, 4}, {"dp", "tp"});
  EXPECT_EQ(m.coordinate(6), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(ViewValues(m, 6), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(DeviceMeshCoordinate, LocalRankIsIndexInSortedGroup) {
  // case custom/[[3,2],[1,0]]-coord-vs-local-rank
  const DeviceMesh m = FromTable({2, 2}, {3, 2, 1, 0}, {"a", "b"}, 4);
  EXPECT_EQ(m.coordinate(0), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(Must(m.GroupOf(0, 0)).local_rank, 0);
  EXPECT_EQ(Must(m.GroupOf(0, 1)).local_rank, 0);
  EXPECT_EQ(Must(m.GroupOf(3, 0)).local_rank, 1);
}

TEST(DeviceMeshCoordinate, LocalRanksOf2x2x2) {
  const DeviceMesh m = Init({2, 2, 2}, {"pp", "dp", "tp"});
  for (int64_t r = 0; r < 8; ++r) {
    EXPECT_EQ(Must(m.GroupOf(r, 0)).local_rank, r / 4);
    EXPECT_EQ(Must(m.GroupOf(r, 1)).local_rank, (r % 4) / 2);
    EXPECT_EQ(Must(m.GroupOf(r, 2)).local_rank, r % 2);
  }
}

TEST(DeviceMeshCreate, SmallerThanWorld_OuterRanksAreNotMembers) {
  const DeviceMesh m = Init({2, 2}, {"dp", "tp"}, /*world=*/8);
  EXPECT_EQ(m.coordinate(3), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(m.coordinate(5), std::nullopt);
  EXPECT_EQ(m.GroupOf(5, 0).status().code(), absl::StatusCode::kFailedPrecondition);
  // One copy: even a non-member sees it (PyTorch returns the only row).
  EXPECT_EQ(ViewValues(m, 5), (std::vector<int64_t>{0, 1, 2, 3}));
}

TEST(DeviceMeshCreate, BiggerThanWorld_InvalidArgument) {
  MESHD_EXPECT_CODE(DeviceMesh::Create({4, 4}, std::nullopt, 8), kInvalidArgument,
                    "a mesh of 16 ranks does not fit in a world of 8");
}

TEST(DeviceMeshCreate, DuplicateNames_InvalidArgument) {
  MESHD_EXPECT_CODE(DeviceMesh::Create({2, 2}, std::vector<std::string>{"dp", "dp"}, 4),
                    kInvalidArgument, "repeat 'dp'");
}

TEST(DeviceMeshCreate, NamesLengthMismatch_InvalidArgument) {
  MESHD_EXPECT_CODE(DeviceMesh::Create({2, 2}, std::vector<std::string>{"dp"}, 4), kInvalidArgument,
                    "name 1 dims, but the mesh has 2");
}

TEST(DeviceMeshCreate, BadShapes_InvalidArgument) {
  MESHD_EXPECT_CODE(DeviceMesh::Create({}, std::nullopt, 4), kInvalidArgument, "shape is empty");
  MESHD_EXPECT_CODE(DeviceMesh::Create({2, 0}, std::nullopt, 4), kInvalidArgument,
                    "size 0 at dim 1");
  MESHD_EXPECT_CODE(DeviceMesh::Create({-2}, std::nullopt, 4), kInvalidArgument,
                    "size -2 at dim 0");
  MESHD_EXPECT_CODE(DeviceMesh::Create({1 << 30, 1 << 30}, std::nullopt, 4), kInvalidArgument,
                    "more than 2^40");
  MESHD_EXPECT_CODE(DeviceMesh::Create({1}, std::nullopt, 0), kInvalidArgument, "world size 0");
  MESHD_EXPECT_CODE(DeviceMesh::Create({2}, std::vector<std::string>{""}, 4), kInvalidArgument,
                    "empty name");
}

TEST(DeviceMeshFromRankTable, SubsetOfWorld) {
  const DeviceMesh m = FromTable({2, 2}, {4, 5, 6, 7}, {"a", "b"}, 8);
  EXPECT_EQ(GroupRows(m, 0), (Rows{{4, 6}, {5, 7}}));
  EXPECT_EQ(m.coordinate(7), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(m.coordinate(0), std::nullopt);
}

TEST(DeviceMeshFromRankTable, TransposedArange) {
  const DeviceMesh m = FromTable({4, 2}, {0, 4, 1, 5, 2, 6, 3, 7}, {"x", "y"}, 8);
  EXPECT_EQ(GroupRows(m, 1), (Rows{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(m.coordinate(5), (std::vector<int64_t>{1, 1}));
}

TEST(DeviceMeshFromRankTable, DuplicateRank_InvalidArgument) {
  MESHD_EXPECT_CODE(DeviceMesh::FromRankTable(RankTensor{{2, 2}, {0, 1, 1, 3}}, std::nullopt, 4),
                    kInvalidArgument, "rank 1 appears twice in the mesh, at positions 1 and 2");
}

TEST(DeviceMeshFromRankTable, RankOutsideWorld_InvalidArgument) {
  MESHD_EXPECT_CODE(DeviceMesh::FromRankTable(RankTensor{{2}, {0, 9}}, std::nullopt, 4),
                    kInvalidArgument,
                    "rank 9 at position 1 of the mesh is outside the world [0, 4)");
  MESHD_EXPECT_CODE(DeviceMesh::FromRankTable(RankTensor{{2}, {0, -1}}, std::nullopt, 4),
                    kInvalidArgument, "rank -1");
}

TEST(DeviceMeshFromRankTable, ShapeValueMismatch_InvalidArgument) {
  MESHD_EXPECT_CODE(DeviceMesh::FromRankTable(RankTensor{{2, 2}, {0, 1, 2}}, std::nullopt, 4),
                    kInvalidArgument, "holds 3 ranks, not 4");
}

TEST(DeviceMeshRemap, SubLayoutOverExplicitRankMap) {
  // Section 2: axes [(2):(2)] over [10,20,30,40] -> [[10,30],[20,40]].
  const DeviceMesh root = FromTable({4}, {10, 20, 30, 40}, {"w"}, 41);
  const FlatLayout axis = Must(FlatLayout::FromSizes({2}, {2}));
  const DeviceMesh m = Must(DeviceMesh::Derive(root.root(), MeshLayout({axis}), std::nullopt));
  EXPECT_EQ(GroupRows(m, 0), (Rows{{10, 30}, {20, 40}}));
  EXPECT_EQ(ViewValues(m, 20), (std::vector<int64_t>{20, 40}));
}

TEST(DeviceMeshRemap, UnsortedAxesGiveTransposedView) {
  // Section 2: [(4):(1),(2):(4)] over arange(8) -> [[0,4],[1,5],[2,6],[3,7]].
  const DeviceMesh root = Init({8}, {"w"});
  const MeshLayout l(
      {Must(FlatLayout::FromSizes({4}, {1})), Must(FlatLayout::FromSizes({2}, {4}))});
  const DeviceMesh m = Must(DeviceMesh::Derive(root.root(), l, std::nullopt));
  EXPECT_EQ(ViewValues(m, 0), (std::vector<int64_t>{0, 4, 1, 5, 2, 6, 3, 7}));
  EXPECT_EQ(m.coordinate(5), (std::vector<int64_t>{1, 1}));
}

TEST(DeviceMeshDerive, OverlappingLayout_InvalidArgument) {
  const DeviceMesh root = Init({8}, {"w"});
  const FlatLayout a = Must(FlatLayout::FromSizes({4}, {1}));
  MESHD_EXPECT_CODE(DeviceMesh::Derive(root.root(), MeshLayout({a, a}), std::nullopt),
                    kInvalidArgument, "overlaps itself");
}

TEST(DeviceMeshApi, SizesAndRepr) {
  const DeviceMesh m = Init({2, 4}, {"dp", "tp"});
  EXPECT_EQ(m.ndim(), 2);
  EXPECT_EQ(m.size(), 8);
  EXPECT_EQ(m.size(1), 4);
  EXPECT_EQ(m.shape(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(m.ToString(), "DeviceMesh((dp=2, tp=4), stride=(4, 1))");
  EXPECT_EQ(Init({8}, {}).ToString(), "DeviceMesh((8,), stride=(1,))");
  EXPECT_EQ(Must(m.DimIndex("tp")), 1);
  MESHD_EXPECT_CODE(m.DimIndex("pp"), kInvalidArgument, "its dims are (dp, tp)");
  MESHD_EXPECT_CODE(Init({8}, {}).DimIndex("pp"), kFailedPrecondition, "no dim names");
}

TEST(DeviceMeshApi, EqualityByValue) {
  EXPECT_EQ(Init({2, 4}, {"dp", "tp"}),
            FromTable({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}, {"dp", "tp"}, 8));
  EXPECT_FALSE(Init({2, 4}, {"dp", "tp"}) == Init({4, 2}, {"dp", "tp"}));
  EXPECT_FALSE(Init({2, 4}, {"dp", "tp"}) == Init({2, 4}, {"a", "b"}));
  // A slice never equals a user-built mesh over the same ranks: the rank maps differ.
  const DeviceMesh tp = Must(Slice(Init({2, 4}, {"dp", "tp"}), {"tp"}));
  EXPECT_FALSE(tp == FromTable({4}, {0, 1, 2, 3}, {"tp"}, 8));
}

TEST(DeviceMeshView, NonMemberOfMultiCopyMesh_FailedPrecondition) {
  const DeviceMesh m = Init({2, 2}, {"dp", "tp"}, /*world=*/8);
  const DeviceMesh tp = Must(Slice(m, {"tp"}));
  EXPECT_EQ(ViewValues(tp, 2), (std::vector<int64_t>{2, 3}));
  MESHD_EXPECT_CODE(tp.View(6), kFailedPrecondition, "rank 6 is not in the mesh");
  EXPECT_EQ(tp.coordinate(6), std::nullopt);
}

TEST(DeviceMeshScale, PerRankQueriesDoNotWalkTheWorld) {
  // 2^20 ranks over 5 dims: constructing and querying one rank must not materialise the world
  // (this would take seconds and gigabytes if it did).
  const DeviceMesh m = Init({16, 64, 4, 32, 8}, {"pp", "dp", "cp", "ep", "tp"});
  EXPECT_EQ(m.coordinate(1'000'000), (std::vector<int64_t>{15, 16, 2, 8, 0}));
  const RankGroup tp = Must(m.GroupOf(1'000'000, 4));
  EXPECT_EQ(tp.ranks.front(), 1'000'000);
  EXPECT_EQ(tp.ranks.size(), 8u);
  const RankGroup pp = Must(m.GroupOf(1'000'000, 0));
  EXPECT_EQ(pp.local_rank, 15);
  EXPECT_EQ(pp.ranks[0], 1'000'000 - 15 * 65536);
}

// ---- Identity: hash consistent with ==, the root mesh (issue 23)
// ---------------------------------------------------------------------------------------

TEST(DeviceMeshHash, EqualMeshesHashEqual) {
  // PyTorch: DeviceMesh(arange(8).view(2,4)) == init_device_mesh((2,4)), and hashes alike.
  const DeviceMesh init = Init({2, 4}, {"dp", "tp"});
  const DeviceMesh table = FromTable({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}, {"dp", "tp"}, 8);
  EXPECT_EQ(init, table);
  EXPECT_EQ(init.Hash(), table.Hash());
  EXPECT_EQ(absl::HashOf(init), absl::HashOf(table));
  // Slices of two roots with the same ranks are equal, and hash alike.
  const DeviceMesh tp1 = Must(Slice(init, {"tp"}));
  const DeviceMesh tp2 = Must(Slice(Init({2, 4}, {"dp", "tp"}), {"tp"}));
  EXPECT_EQ(tp1, tp2);
  EXPECT_EQ(tp1.Hash(), tp2.Hash());
  // A permuted table is another mesh: [[0,2],[1,3]] is not arange(4).view(2,2).
  const DeviceMesh permuted = FromTable({2, 2}, {0, 2, 1, 3}, {"a", "b"}, 4);
  const DeviceMesh same_permuted = FromTable({2, 2}, {0, 2, 1, 3}, {"a", "b"}, 8);
  EXPECT_EQ(permuted, same_permuted);  // the world is not part of a mesh's value
  EXPECT_EQ(permuted.Hash(), same_permuted.Hash());
  EXPECT_NE(permuted.Hash(), Init({2, 2}, {"a", "b"}).Hash());
  EXPECT_NE(init.Hash(), Init({2, 4}, {}).Hash());            // names
  EXPECT_NE(init.Hash(), Init({4, 2}, {"dp", "tp"}).Hash());  // layout
  // A subset table over other ranks.
  EXPECT_NE(FromTable({2}, {4, 5}, {"x"}, 8).Hash(), FromTable({2}, {5, 4}, {"x"}, 8).Hash());
  absl::flat_hash_set<DeviceMesh> set = {init, table, tp1, tp2, permuted, same_permuted};
  EXPECT_EQ(set.size(), 3u);
}

TEST(DeviceMeshRoot, EveryDerivedMeshReachesItsRoot) {
  const DeviceMesh root = Init({2, 2, 2}, {"dp", "cp", "tp"});
  EXPECT_TRUE(root.IsRoot());
  EXPECT_EQ(root.RootMesh(), root);
  const DeviceMesh tp = Must(Slice(root, {"tp"}));
  EXPECT_FALSE(tp.IsRoot());
  EXPECT_EQ(tp.RootMesh(), root);
  const DeviceMesh flat = Must(Flatten(Must(Slice(root, {"dp", "cp"}))));
  EXPECT_EQ(flat.RootMesh(), root);
  const DeviceMesh split = Must(Unflatten(flat, 0, {2, 2}, {"x", "y"}));
  EXPECT_EQ(split.RootMesh(), root);
  EXPECT_EQ(Must(Concatenate({tp, Must(Slice(root, {"dp"}))})).RootMesh(), root);
  // The root mesh shares the registry: the flattened name is sliceable from it.
  EXPECT_EQ(Must(Slice(tp.RootMesh(), {"dp_cp"})), flat);
  // A user-built table is its own root.
  const DeviceMesh table = FromTable({2, 2}, {3, 1, 0, 2}, {"a", "b"}, 4);
  EXPECT_EQ(Must(Slice(table, {"b"})).RootMesh(), table);
}

// ---- from_group (issue 23): the maths of DeviceMesh.from_group
// ---------------------------------------------------------------------------------------

TEST(DeviceMeshFromGroups, OneGroup_OneDimMeshOverItsRanks) {
  const std::vector<std::vector<int64_t>> groups = {{4, 5, 6, 7}};
  const DeviceMesh m = Must(DeviceMesh::FromGroups(groups, std::nullopt, std::nullopt, 8, 6));
  EXPECT_EQ(m, FromTable({4}, {4, 5, 6, 7}, {}, 8));
  EXPECT_EQ(m.coordinate(6), (std::vector<int64_t>{2}));
  EXPECT_EQ(m.coordinate(0), std::nullopt);
  // A table equal to the group is accepted; another is PyTorch's "Invalid mesh" ValueError.
  EXPECT_TRUE(
      DeviceMesh::FromGroups(groups, RankTensor{{4}, {4, 5, 6, 7}}, DimNames({"w"}), 8).ok());
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups(groups, RankTensor{{4}, {4, 6, 5, 7}}, std::nullopt, 8),
                    kInvalidArgument, "mesh [4,6,5,7] is not the process group's ranks [4,5,6,7]");
}

TEST(DeviceMeshFromGroups, SeveralGroups_TableAndNamesRequired_GroupsChecked) {
  // mesh [[0,2],[1,3]]: rank 0's group along a is [0,1], along b [0,2].
  const RankTensor table{{2, 2}, {0, 2, 1, 3}};
  const std::vector<std::vector<int64_t>> groups = {{0, 1}, {0, 2}};
  const DeviceMesh m = Must(DeviceMesh::FromGroups(groups, table, DimNames({"a", "b"}), 4, 0));
  EXPECT_EQ(m, FromTable({2, 2}, {0, 2, 1, 3}, {"a", "b"}, 4));
  // c10d lists a group's ranks sorted: order does not matter.
  const std::vector<std::vector<int64_t>> rank3 = {{3, 2}, {3, 1}};
  EXPECT_TRUE(DeviceMesh::FromGroups(rank3, table, DimNames({"a", "b"}), 4, 3).ok());
  // Unchecked without the caller's rank, as PyTorch trusts them.
  const std::vector<std::vector<int64_t>> swapped = {{0, 2}, {0, 1}};
  EXPECT_TRUE(DeviceMesh::FromGroups(swapped, table, DimNames({"a", "b"}), 4).ok());
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups(swapped, table, DimNames({"a", "b"}), 4, 0),
                    kInvalidArgument, "process group 0 [0,2] is not rank 0's group along a");
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups(groups, table, DimNames({"a", "b"}), 8, 5),
                    kInvalidArgument, "rank 5 is not in the mesh");
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups(groups, std::nullopt, DimNames({"a", "b"}), 4),
                    kInvalidArgument, "needs the mesh");
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups(groups, table, std::nullopt, 4), kInvalidArgument,
                    "needs dim names");
  MESHD_EXPECT_CODE(
      DeviceMesh::FromGroups(groups, RankTensor{{4}, {0, 1, 2, 3}}, DimNames({"a", "b"}), 4),
      kInvalidArgument, "the mesh has 1 dims");
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups({}, table, std::nullopt, 4), kInvalidArgument,
                    "at least one group");
  const std::vector<std::vector<int64_t>> empty = {{0, 1}, {}};
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups(empty, table, DimNames({"a", "b"}), 4), kInvalidArgument,
                    "group 1 has no ranks");
  const std::vector<std::vector<int64_t>> big = {{0, 1, 2, 3, 4}};
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups(big, std::nullopt, std::nullopt, 4), kInvalidArgument,
                    "more than the world's 4");
  // The table's own errors (a rank twice) are FromRankTable's.
  MESHD_EXPECT_CODE(
      DeviceMesh::FromGroups(groups, RankTensor{{2, 2}, {0, 2, 1, 1}}, DimNames({"a", "b"}), 4),
      kInvalidArgument, "appears twice");
}

TEST(DeviceMeshLimits, MoreThanMaxDims_RefusedBeforeBuilding) {
  const std::vector<int64_t> ones(kMaxMeshDims, 1);
  EXPECT_TRUE(DeviceMesh::Create(ones, std::nullopt, 1).ok());
  const std::vector<int64_t> too_many(kMaxMeshDims + 1, 1);
  MESHD_EXPECT_CODE(DeviceMesh::Create(too_many, std::nullopt, 1), kInvalidArgument,
                    "65 dims has more than 64");
  MESHD_EXPECT_CODE(DeviceMesh::FromRankTable(RankTensor{too_many, {0}}, std::nullopt, 1),
                    kInvalidArgument, "more than 64");
  const DeviceMesh m = Init({4}, {"w"});
  MESHD_EXPECT_CODE(Unflatten(m, 0, too_many, std::vector<std::string>(too_many.size(), "x")),
                    kInvalidArgument, "more than 64 dims");
  MESHD_EXPECT_CODE(Slice(m, std::vector<std::string>(kMaxMeshDims + 1, "w")), kInvalidArgument,
                    "at most 64");
  const DeviceMesh wide = Init(ones, [] {
    std::vector<std::string> n;
    for (int i = 0; i < kMaxMeshDims; ++i) n.push_back(absl::StrCat("d", i));
    return n;
  }());
  MESHD_EXPECT_CODE(Concatenate({wide, Must(Slice(wide, {"d0"}))}), kInvalidArgument,
                    "65 dims, more than 64");
  const std::vector<std::vector<int64_t>> groups(kMaxMeshDims + 1, std::vector<int64_t>{0});
  MESHD_EXPECT_CODE(DeviceMesh::FromGroups(groups, std::nullopt, std::nullopt, 1), kInvalidArgument,
                    "more than 64 dims");
}

}  // namespace
}  // namespace meshd::layout
