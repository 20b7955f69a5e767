// Slice, flatten, unflatten and concatenate: the semantics doc's sections 7-9 and 16, every
// example and every error path.
#include "common/layout/mesh_ops.h"

#include "tests/unit/layout/mesh_test_util.h"

namespace meshd::layout {
namespace {

using ::meshd::layout::testing::FromTable;
using ::meshd::layout::testing::GroupRows;
using ::meshd::layout::testing::Init;
using ::meshd::layout::testing::Must;
using ::meshd::layout::testing::Names;
using ::meshd::layout::testing::Rows;
using ::meshd::layout::testing::ViewValues;

DeviceMesh Mesh3d() { return Init({2, 2, 2}, {"dp", "cp", "tp"}); }

// ---- ResolveDim (issue 23): the dim argument of PyTorch's per-dim calls
// ---------------------------------------------------------------------------------------

ResolvedDim Resolve(const DeviceMesh& m, const DimRef& dim) {
  absl::StatusOr<ResolvedDim> r = ResolveDim(m, dim);
  if (!r.ok()) {
    ADD_FAILURE() << r.status();
    return ResolvedDim{m, 0, false};
  }
  return *std::move(r);
}

TEST(ResolveDim, IndicesNegativeIndicesAndNames) {
  const DeviceMesh m = Mesh3d();
  for (const auto& [dim, index] : std::vector<std::pair<DimRef, int>>{
           {0, 0}, {2, 2}, {-1, 2}, {-3, 0}, {std::string("cp"), 1}}) {
    const ResolvedDim r = Resolve(m, dim);
    EXPECT_EQ(r.dim, index);
    EXPECT_FALSE(r.flattened);
    EXPECT_EQ(r.mesh, m);
  }
  const std::string m_text = m.ToString();
  MESHD_EXPECT_CODE(ResolveDim(m, 3), kInvalidArgument,
                    "dim 3 is out of range for " + m_text +
                        ", which has 3 dims (valid: -3..2, a name of ('dp', 'cp', 'tp'))");
  MESHD_EXPECT_CODE(ResolveDim(m, -4), kInvalidArgument, "dim -4 is out of range");
  MESHD_EXPECT_CODE(ResolveDim(m, std::string("pp")), kInvalidArgument,
                    "dim 'pp' is not a dim of " + m_text + " (valid: -3..2");
  MESHD_EXPECT_CODE(ResolveDim(Init({2, 4}, {}), std::string("tp")), kInvalidArgument,
                    "which has no dim names (valid: -2..1)");
}

TEST(ResolveDim, FlattenedNameFromAnyMeshOfTheRoot) {
  // PyTorch's get_group("dp_tp") after mesh["dp","tp"]._flatten() works on every mesh sharing
  // the root, even one without those dims.
  const DeviceMesh m = Mesh3d();
  const DeviceMesh flat = Must(Flatten(Must(Slice(m, {"dp", "tp"}))));  // (2,2):(4,1)
  for (const DeviceMesh& from : {m, Must(Slice(m, {"cp"})), Must(Slice(m, {"dp", "tp"}))}) {
    const ResolvedDim r = Resolve(from, std::string("dp_tp"));
    EXPECT_TRUE(r.flattened);
    EXPECT_EQ(r.dim, 0);
    EXPECT_EQ(r.mesh, flat);
    EXPECT_EQ(Must(r.mesh.GroupOf(6, 0)).ranks, (std::vector<int64_t>{2, 3, 6, 7}));
    EXPECT_EQ(Must(r.mesh.GroupOf(6, 0)).local_rank, 2);
  }
  // The message lists the flattened names too.
  MESHD_EXPECT_CODE(ResolveDim(Must(Slice(m, {"cp"})), std::string("x")), kInvalidArgument,
                    "(valid: -1..0, a name of ('cp'), or a flattened dim of its root: ('dp_tp'))");
  // Another root does not know it.
  MESHD_EXPECT_CODE(ResolveDim(Mesh3d(), std::string("dp_tp")), kInvalidArgument,
                    "is not a dim of");
}

TEST(ResolveDim, FlattenedNameIsLookedUpFirst_AsPyTorchGetGroup) {
  // On ("dp","tp") 2x4, flatten "dp" as "a", then unflatten tp into ("a","b"): PyTorch's
  // get_group("a") on the unflattened mesh answers the root's flattened "a" (dp), not its own.
  const DeviceMesh root = Init({2, 4}, {"dp", "tp"});
  const DeviceMesh a = Must(Flatten(Must(Slice(root, {"dp"})), std::string("a")));
  const DeviceMesh u = Must(Unflatten(root, std::string("tp"), {2, 2}, {"a", "b"}));
  const ResolvedDim r = Resolve(u, std::string("a"));
  EXPECT_TRUE(r.flattened);
  EXPECT_EQ(r.mesh, a);
  EXPECT_EQ(Must(r.mesh.GroupOf(5, 0)).ranks, (std::vector<int64_t>{1, 5}));
  // By index, dim 1 is still its own "a": [5,7] for rank 5.
  EXPECT_EQ(Must(u.GroupOf(5, Resolve(u, 1).dim)).ranks, (std::vector<int64_t>{5, 7}));
}

TEST(ResolveDim, SubsetAndPermutedTables) {
  // DeviceMesh(mesh=[[3,1],[0,2]], names ("a","b")): groups of a are [3,0],[1,2].
  const DeviceMesh m = FromTable({2, 2}, {3, 1, 0, 2}, {"a", "b"}, 4);
  EXPECT_EQ(GroupRows(m, Resolve(m, -2).dim), (Rows{{3, 0}, {1, 2}}));
  const DeviceMesh ab = Must(Flatten(m));
  EXPECT_EQ(GroupRows(Resolve(m, std::string("a_b")).mesh, 0), (Rows{{3, 1, 0, 2}}));
  EXPECT_EQ(Must(ab.GroupOf(0, 0)).local_rank, 0);
  EXPECT_EQ(Must(ab.GroupOf(3, 0)).local_rank, 3);
}

// ---- Slice
// ---------------------------------------------------------------------------------------

TEST(Slice, OneDimOf2d_PerRankViews) {
  const DeviceMesh m = Init({2, 4}, {"dp", "tp"});
  const DeviceMesh tp = Must(Slice(m, {"tp"}));
  const DeviceMesh dp = Must(Slice(m, {"dp"}));
  for (int64_t r = 0; r < 8; ++r) {
    EXPECT_EQ(ViewValues(tp, r),
              r < 4 ? (std::vector<int64_t>{0, 1, 2, 3}) : (std::vector<int64_t>{4, 5, 6, 7}));
    EXPECT_EQ(ViewValues(dp, r), (std::vector<int64_t>{r % 4, r % 4 + 4}));
  }
  EXPECT_EQ(tp.coordinate(6), (std::vector<int64_t>{2}));
}

TEST(Slice, OwnNames_ReturnsSameMesh) {
  const DeviceMesh m = Init({2, 4}, {"dp", "tp"});
  EXPECT_EQ(Must(Slice(m, {"dp", "tp"})), m);
  const DeviceMesh one = Init({8}, {"dp"});
  EXPECT_EQ(Must(Slice(one, {"dp"})), one);
}

TEST(Slice, NonAdjacentDims) {
  const DeviceMesh s = Must(Slice(Mesh3d(), {"dp", "tp"}));
  EXPECT_EQ(ViewValues(s, 0), (std::vector<int64_t>{0, 1, 4, 5}));
  EXPECT_EQ(ViewValues(s, 3), (std::vector<int64_t>{2, 3, 6, 7}));
  EXPECT_EQ(s.shape(), (std::vector<int64_t>{2, 2}));
}

TEST(Slice, WithoutNames_FailedPrecondition) {
  MESHD_EXPECT_CODE(Slice(Init({2, 4}, {}), {"dp"}), kFailedPrecondition, "no dim names");
}

TEST(Slice, UnknownName_InvalidArgument) {
  MESHD_EXPECT_CODE(Slice(Init({2, 4}, {"dp", "tp"}), {"pp"}), kInvalidArgument,
                    "valid dim names are ('dp', 'tp')");
  MESHD_EXPECT_CODE(Slice(Init({2, 4}, {"dp", "tp"}), {}), kInvalidArgument, "at least one");
}

TEST(Slice, OutOfOrder_InvalidArgument) {
  MESHD_EXPECT_CODE(Slice(Init({2, 4}, {"dp", "tp"}), {"tp", "dp"}), kInvalidArgument,
                    "root mesh's order");
}

TEST(Slice, SizeOneDimsAreOrderFree) {
  const DeviceMesh m = Init({3, 1, 5}, {"a", "b", "c"});
  EXPECT_TRUE(Slice(m, {"b", "a"}).ok());
  EXPECT_TRUE(Slice(m, {"c", "b"}).ok());
  EXPECT_TRUE(Slice(m, {"a", "c", "b"}).ok());
  const DeviceMesh ones = Init({1, 1}, {"x", "y"});
  EXPECT_TRUE(Slice(ones, {"x", "x"}).ok());
  EXPECT_TRUE(Slice(ones, {"y", "x"}).ok());
}

TEST(Slice, DuplicateDim_InvalidArgument) {
  MESHD_EXPECT_CODE(Slice(Init({2, 4}, {"dp", "tp"}), {"tp", "tp"}), kInvalidArgument, "overlap");
}

TEST(Slice, FlattenedNameFromRoot) {
  const DeviceMesh m = Mesh3d();
  const DeviceMesh dp_cp = Must(Flatten(Must(Slice(m, {"dp", "cp"}))));
  EXPECT_EQ(dp_cp.names(), (Names{"dp_cp"}));
  EXPECT_EQ(Must(Slice(m, {"dp_cp"})), dp_cp);
  const DeviceMesh two = Must(Slice(m, {"dp_cp", "tp"}));
  EXPECT_EQ(two.shape(), (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(ViewValues(two, 5), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  MESHD_EXPECT_CODE(Slice(m, {"tp", "dp_cp"}), kInvalidArgument, "root mesh's order");
  MESHD_EXPECT_CODE(Slice(m, {"dp_cp", "cp"}), kInvalidArgument, "overlap");
}

TEST(Slice, NonContiguousFlattenedDimCannotCombineWithMiddleDim) {
  const DeviceMesh m = Mesh3d();
  ASSERT_TRUE(Flatten(Must(Slice(m, {"dp", "tp"}))).ok());
  EXPECT_EQ(Slice(m, {"dp_tp", "cp"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Slice(m, {"cp", "dp_tp"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GroupRows(Must(Slice(m, {"dp_tp"})), 0), (Rows{{0, 1, 4, 5}, {2, 3, 6, 7}}));
}

TEST(Slice, FlattenedNameFromSubmesh_InvalidArgument) {
  const DeviceMesh m = Mesh3d();
  ASSERT_TRUE(Flatten(Must(Slice(m, {"dp", "cp"}))).ok());
  const DeviceMesh sub = Must(Slice(m, {"dp", "cp"}));
  MESHD_EXPECT_CODE(Slice(sub, {"dp_cp"}), kInvalidArgument, "only be sliced from the root");
}

// ---- Flatten
// -------------------------------------------------------------------------------------

TEST(Flatten, ContiguousDims) {
  const DeviceMesh f = Must(Flatten(Must(Slice(Mesh3d(), {"dp", "cp"}))));
  EXPECT_EQ(f.layout().axes()[0].ToString(), "(4):(2)");
  EXPECT_EQ(GroupRows(f, 0), (Rows{{0, 2, 4, 6}, {1, 3, 5, 7}}));
}

TEST(Flatten, NonContiguousDims) {
  const DeviceMesh f = Must(Flatten(Must(Slice(Mesh3d(), {"dp", "tp"}))));
  EXPECT_EQ(f.layout().axes()[0].ToString(), "(2,2):(4,1)");
  EXPECT_EQ(GroupRows(f, 0), (Rows{{0, 1, 4, 5}, {2, 3, 6, 7}}));
  EXPECT_EQ(f.ToString(), "DeviceMesh((dp_tp=4,), stride=((4, 1),))");
}

TEST(Flatten, WholeMeshWithExplicitName) {
  const DeviceMesh f = Must(Flatten(Mesh3d(), "world"));
  EXPECT_EQ(GroupRows(f, 0), (Rows{{0, 1, 2, 3, 4, 5, 6, 7}}));
}

TEST(Flatten, Idempotent_SameLayoutReturnsExisting) {
  const DeviceMesh m = Mesh3d();
  const DeviceMesh a = Must(Flatten(Must(Slice(m, {"dp", "cp"}))));
  const DeviceMesh b = Must(Flatten(Must(Slice(m, {"dp", "cp"}))));
  EXPECT_EQ(a, b);
  EXPECT_EQ(m.root()->FlattenedNames(), (Names{"dp_cp"}));
}

TEST(Flatten, NameReusedForOtherLayout_InvalidArgument) {
  const DeviceMesh m = Mesh3d();
  ASSERT_TRUE(Flatten(Must(Slice(m, {"dp", "cp"})), "x").ok());
  MESHD_EXPECT_CODE(Flatten(Must(Slice(m, {"cp", "tp"})), "x"), kInvalidArgument,
                    "already used to flatten other dims");
}

TEST(Flatten, RootDimName_InvalidArgument) {
  MESHD_EXPECT_CODE(Flatten(Must(Slice(Mesh3d(), {"dp", "cp"})), "tp"), kInvalidArgument,
                    "already has a dim of that name");
}

TEST(Flatten, OneDimIntoOwnName_ReturnsSelf) {
  const DeviceMesh m = Init({8}, {"dp"});
  EXPECT_EQ(Must(Flatten(m, "dp")), m);
  EXPECT_TRUE(m.root()->FlattenedNames().empty());
}

TEST(Flatten, WithoutNames_FailedPrecondition) {
  MESHD_EXPECT_CODE(Flatten(Init({2, 4}, {})), kFailedPrecondition, "no dim names");
  MESHD_EXPECT_CODE(Flatten(Init({2, 4}, {"a", "b"}), ""), kInvalidArgument, "name is empty");
}

TEST(Flatten, CustomOrderFollowsRankMap) {
  const DeviceMesh m = FromTable({4, 2}, {0, 4, 1, 5, 2, 6, 3, 7}, {"a", "b"}, 8);
  EXPECT_EQ(GroupRows(Must(Flatten(m)), 0), (Rows{{0, 4, 1, 5, 2, 6, 3, 7}}));
}

TEST(Flatten, OfUnflattenedMeshRegistersOnOriginalRoot) {
  const DeviceMesh root = Init({8}, {"w"});
  const DeviceMesh u = Must(Unflatten(root, 0, {2, 4}, {"dp", "tp"}));
  const DeviceMesh f = Must(Flatten(Must(Slice(u, {"tp"})), "inner"));
  EXPECT_EQ(root.root()->FlattenedNames(), (Names{"inner"}));
  EXPECT_EQ(Must(Slice(root, {"inner"})), f);
}

// ---- Unflatten
// -----------------------------------------------------------------------------------

TEST(Unflatten, WorldReproducesInitGroups) {
  const DeviceMesh u = Must(Unflatten(Init({8}, {"w"}), 0, {2, 4}, {"dp", "tp"}));
  const DeviceMesh direct = Init({2, 4}, {"dp", "tp"});
  for (int d = 0; d < 2; ++d) EXPECT_EQ(GroupRows(u, d), GroupRows(direct, d));
}

TEST(Unflatten, OneDimOfMany) {
  const DeviceMesh u = Must(Unflatten(Init({2, 4}, {"dp", "tp"}), "tp", {2, 2}, {"x", "y"}));
  EXPECT_EQ(u.names(), (Names{"dp", "x", "y"}));
  EXPECT_EQ(GroupRows(u, 1), (Rows{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
}

TEST(Unflatten, ToSizeOneDim) {
  const DeviceMesh u = Must(Unflatten(Init({2, 4}, {"dp", "tp"}), 1, {1, 4}, {"one", "tp4"}));
  EXPECT_EQ(u.shape(), (std::vector<int64_t>{2, 1, 4}));
  EXPECT_EQ(GroupRows(u, 1).size(), 8u);
}

TEST(Unflatten, CustomRankMap) {
  const DeviceMesh u =
      Must(Unflatten(FromTable({4}, {3, 1, 2, 0}, {"w"}, 4), 0, {2, 2}, {"a", "b"}));
  EXPECT_EQ(ViewValues(u, 0), (std::vector<int64_t>{3, 1, 2, 0}));
  EXPECT_EQ(u.coordinate(2), (std::vector<int64_t>{1, 0}));
}

TEST(Unflatten, NonContiguousFlattenRoundTrip) {
  const DeviceMesh m = Mesh3d();
  const DeviceMesh f = Must(Flatten(Must(Slice(m, {"dp", "tp"}))));
  const DeviceMesh u = Must(Unflatten(f, 0, {2, 2}, {"dp2", "tp2"}));
  EXPECT_EQ(GroupRows(u, 0), GroupRows(m, 0));
  EXPECT_EQ(GroupRows(u, 1), GroupRows(m, 2));
}

TEST(Unflatten, NonFactorable_InvalidArgument) {
  const DeviceMesh m = Init({2, 2, 3}, {"a", "b", "c"});
  const DeviceMesh f = Must(Flatten(Must(Slice(m, {"a", "c"}))));  // (2,3):(6,1)
  MESHD_EXPECT_CODE(Unflatten(f, 0, {3, 2}, {"x", "y"}), kInvalidArgument, "not contiguous");
}

TEST(Unflatten, DimOutOfRange_InvalidArgument) {
  const DeviceMesh m = Init({2, 4}, {"dp", "tp"});
  MESHD_EXPECT_CODE(Unflatten(m, 2, {2, 1}, {"a", "b"}), kInvalidArgument, "dim 2 is out of range");
  // PyTorch lets -1 through and then trips an assertion; we reject it up front.
  MESHD_EXPECT_CODE(Unflatten(m, -1, {2, 2}, {"a", "b"}), kInvalidArgument,
                    "dim -1 is out of range");
}

TEST(Unflatten, UnknownDimName_InvalidArgument) {
  MESHD_EXPECT_CODE(Unflatten(Init({2, 4}, {"dp", "tp"}), "pp", {2, 1}, {"a", "b"}),
                    kInvalidArgument, "dim 'pp' is not in the mesh");
}

TEST(Unflatten, SizesNamesLengthMismatch_InvalidArgument) {
  MESHD_EXPECT_CODE(Unflatten(Init({2, 4}, {"dp", "tp"}), 1, {2, 2}, {"a"}), kInvalidArgument,
                    "one name per size");
  MESHD_EXPECT_CODE(Unflatten(Init({2, 4}, {"dp", "tp"}), 1, {}, {}), kInvalidArgument,
                    "at least one size");
}

TEST(Unflatten, ProductMismatch_InvalidArgument) {
  MESHD_EXPECT_CODE(Unflatten(Init({2, 4}, {"dp", "tp"}), 1, {2, 3}, {"a", "b"}), kInvalidArgument,
                    "the product of sizes (2,3) is 6");
  MESHD_EXPECT_CODE(Unflatten(Init({2, 4}, {"dp", "tp"}), 1, {-2, -2}, {"a", "b"}),
                    kInvalidArgument, "at least 1");
}

TEST(Unflatten, NameClash_InvalidArgument) {
  // PyTorch would produce ("dp","dp","x"), which no slice can address; we refuse.
  MESHD_EXPECT_CODE(Unflatten(Init({2, 4}, {"dp", "tp"}), 1, {2, 2}, {"dp", "x"}), kInvalidArgument,
                    "repeat 'dp'");
}

TEST(Unflatten, WithoutNames_FailedPrecondition) {
  MESHD_EXPECT_CODE(Unflatten(Init({8}, {}), 0, {2, 4}, {"a", "b"}), kFailedPrecondition,
                    "no dim names");
}

// ---- Concatenate
// ---------------------------------------------------------------------------------

TEST(Concatenate, TransposedMesh) {
  const DeviceMesh m = Mesh3d();
  const DeviceMesh t = Must(Concatenate({Must(Slice(m, {"tp"})), Must(Slice(m, {"dp"}))}));
  EXPECT_EQ(t.names(), (Names{"tp", "dp"}));
  EXPECT_EQ(ViewValues(t, 0), (std::vector<int64_t>{0, 4, 1, 5}));
  EXPECT_EQ(t.coordinate(4), (std::vector<int64_t>{0, 1}));
}

TEST(Concatenate, SameRankMapContentFromDifferentRoots) {
  const DeviceMesh a = Init({2, 4}, {"dp", "tp"});
  const DeviceMesh b = Must(Unflatten(Init({8}, {"w"}), 0, {2, 4}, {"x", "y"}));
  const DeviceMesh c = Must(Concatenate({Must(Slice(a, {"dp"})), Must(Slice(b, {"y"}))}));
  EXPECT_EQ(GroupRows(c, 1), GroupRows(a, 1));
}

TEST(Concatenate, Overlap_InvalidArgument) {
  const DeviceMesh dp = Must(Slice(Mesh3d(), {"dp"}));
  MESHD_EXPECT_CODE(Concatenate({dp, dp}), kInvalidArgument, "overlapping");
}

TEST(Concatenate, DifferentRankMaps_InvalidArgument) {
  MESHD_EXPECT_CODE(
      Concatenate({Init({8}, {"a"}), FromTable({8}, {7, 6, 5, 4, 3, 2, 1, 0}, {"b"}, 8)}),
      kInvalidArgument, "different root mesh");
}

TEST(Concatenate, EmptyOrUnnamed_InvalidArgument) {
  MESHD_EXPECT_CODE(Concatenate({}), kInvalidArgument, "at least one mesh");
  MESHD_EXPECT_CODE(Concatenate({Init({8}, {})}), kInvalidArgument, "no dim names");
}

TEST(Concatenate, RepeatedNames_InvalidArgument) {
  const DeviceMesh a = Must(Slice(Init({2, 4}, {"dp", "tp"}), {"dp"}));
  const DeviceMesh b =
      Must(Slice(Must(Unflatten(Init({8}, {"w"}), 0, {2, 4}, {"x", "dp"})), {"dp"}));
  MESHD_EXPECT_CODE(Concatenate({a, b}), kInvalidArgument, "repeat 'dp'");
}

}  // namespace
}  // namespace meshd::layout
