// Mesh fingerprints, group keys and chunk leaders: a fingerprint rebuilds the mesh's group maths
// exactly (GroupIndex and GroupMember against GroupOf and Groups), for root and derived meshes, over
// identity rank maps and explicit tables; only canonical fingerprints within the world are
// accepted. A group's key is the same through every view of its root.
#include "common/layout/mesh_spec.h"

#include "absl/strings/str_cat.h"

#include "common/layout/mesh_ops.h"
#include "tests/unit/layout/mesh_test_util.h"

namespace meshd::layout {
namespace {

using ::meshd::layout::testing::FromTable;
using ::meshd::layout::testing::Init;
using ::meshd::layout::testing::Must;
using ::testing::HasSubstr;

// Every group of every dim of `rebuilt` is `original`'s, member by member.
void ExpectSameGroups(const DeviceMesh& original, const DeviceMesh& rebuilt, int64_t world) {
  ASSERT_EQ(rebuilt.ndim(), original.ndim());
  for (int d = 0; d < original.ndim(); ++d) {
    EXPECT_EQ(rebuilt.DimLabel(d), original.DimLabel(d));
    const GroupTable table = original.Groups(d);
    ASSERT_EQ(rebuilt.num_groups(d), table.num_groups());
    for (int64_t g = 0; g < table.num_groups(); ++g) {
      for (int64_t j = 0; j < table.group_size; ++j) {
        EXPECT_EQ(rebuilt.GroupMember(d, g, j), table.row(g)[j]) << d << " " << g << " " << j;
      }
    }
    for (int64_t r = 0; r < world; ++r) {
      absl::StatusOr<RankGroup> group = original.GroupOf(r, d);
      const std::optional<int64_t> index = rebuilt.GroupIndex(r, d);
      ASSERT_EQ(index.has_value(), group.ok()) << r;
      if (index) {
        EXPECT_EQ(*index, group->index);
      }
    }
  }
}

TEST(MeshFingerprint, InitDeviceMesh_CanonicalText) {
  EXPECT_EQ(MeshFingerprint(Init({2, 4}, {"dp", "tp"})), "identity(8)|[(2):(4), (4):(1)]|dp,tp");
  EXPECT_EQ(MeshFingerprint(Init({3}, {})), "identity(3)|[(3):(1)]|-");
}

TEST(MeshFromFingerprint, RootAndDerivedMeshes_SameGroups) {
  const DeviceMesh root = Init({2, 3, 4}, {"pp", "dp", "tp"}, 30);  // ranks 24-29 outside it
  const DeviceMesh flat = Must(Flatten(Must(Slice(root, {"pp", "tp"})), "pp_tp"));  // (2,4):(12,1)
  for (const DeviceMesh& m : {root, Must(Slice(root, {"dp", "tp"})), flat, Init({5}, {})}) {
    SCOPED_TRACE(MeshFingerprint(m));
    const DeviceMesh rebuilt = Must(MeshFromFingerprint(MeshFingerprint(m), 30));
    EXPECT_EQ(MeshFingerprint(rebuilt), MeshFingerprint(m));
    ExpectSameGroups(m, rebuilt, 30);
  }
  EXPECT_EQ(MeshFingerprint(flat), "identity(24)|[(2,4):(12,1)]|pp_tp");
}

TEST(MeshFromFingerprint, RankTables_ListedInFull_SameGroups) {
  const DeviceMesh table = FromTable({2, 2}, {3, 1, 0, 2}, {"a", "b"}, 6);
  EXPECT_EQ(MeshFingerprint(table), "ranks(3,1,0,2)|[(2):(2), (2):(1)]|a,b");
  const DeviceMesh stage = FromTable({2}, {4, 5}, {}, 6);  // a subset: one pipeline stage
  const DeviceMesh in_order = FromTable({2, 2}, {0, 1, 2, 3}, {}, 6);
  EXPECT_EQ(MeshFingerprint(in_order), "identity(4)|[(2):(2), (2):(1)]|-");
  for (const DeviceMesh& m : {table, Must(Slice(table, {"b"})), stage, in_order}) {
    SCOPED_TRACE(MeshFingerprint(m));
    const DeviceMesh rebuilt = Must(MeshFromFingerprint(MeshFingerprint(m), 6));
    EXPECT_EQ(MeshFingerprint(rebuilt), MeshFingerprint(m));
    ExpectSameGroups(m, rebuilt, 6);
  }
}

TEST(MeshFromFingerprint, NotOneItCanRebuild_InvalidArgument) {
  for (const std::string& fp :
       {std::string("ranks(1,1)|[(2):(1)]|-"),  // a rank twice
        std::string("ranks(1,9)|[(2):(1)]|-"),  // outside the world of 8
        std::string("ranks(1,01)|[(2):(1)]|-"), std::string("ranks()|[(1):(1)]|-"),
        std::string("ranks(0,1)|[(2):(1)]|-"),  // the identity is written identity(2)
        std::string("fp"), std::string("identity(8)|[(2):(4), (4):(1)]"),
        std::string("identity(16)|[(16):(1)]|x"),        // larger than the world of 8
        std::string("identity(8)|[(2,2):(2,1)]|x"),       // not canonical: (4):(1)
        std::string("identity(8)|[(2):(4), (4):(1)]|x"),  // one name for two dims
        std::string("identity(8)|[(4):(2), (4):(1)]|a,b"),  // overlaps
        std::string("identity(8)|[(9223372036854775807):(1)]|x"),
        std::string("identity(8)|[(2):(4) (4):(1)]|a,b"), std::string("identity(-1)|[]|-")}) {
    absl::StatusOr<DeviceMesh> m = MeshFromFingerprint(fp, 8);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << fp;
  }
  std::string big = "ranks(";
  for (int64_t r = kMaxExchangedTableRanks; r >= 0; --r) {
    absl::StrAppend(&big, r, r ? "," : ")|[(16385):(1)]|-");
  }
  EXPECT_THAT(std::string(MeshFromFingerprint(big, 1 << 20).status().message()),
              HasSubstr("at most 16384"));
}

// Views of one root reach the same key for the same group: a slice's dim is its parent's, a
// flatten of one dim is that dim, a concatenation of slices is the root's dims.
TEST(GroupKey, SameGroupThroughEveryView) {
  const DeviceMesh root = Init({2, 2, 4}, {"pp", "dp", "tp"});
  const auto key = [](const DeviceMesh& m, int dim, int64_t rank) {
    return GroupKey("m", m.layout().axes()[dim], Must(m.GroupOf(rank, dim)).index);
  };
  EXPECT_EQ(key(root, 2, 6), "m/(4):(1)/1");
  EXPECT_EQ(key(Must(Slice(root, {"tp"})), 0, 6), key(root, 2, 6));
  EXPECT_EQ(key(Must(Slice(root, {"dp", "tp"})), 0, 6), key(root, 1, 6));
  EXPECT_EQ(key(Must(Flatten(Must(Slice(root, {"tp"})), "t")), 0, 6), key(root, 2, 6));
  const DeviceMesh dp_tp = Must(Flatten(Must(Slice(root, {"dp", "tp"})), "dp_tp"));
  EXPECT_EQ(key(dp_tp, 0, 6), "m/(8):(1)/0");
  const DeviceMesh cat =
      Must(Concatenate({Must(Slice(root, {"pp"})), Must(Slice(root, {"tp"}))}));
  EXPECT_EQ(key(cat, 0, 6), key(root, 0, 6));
  EXPECT_EQ(key(cat, 1, 6), key(root, 2, 6));
  EXPECT_EQ(std::string(kWorldGroupKey), "world/0");
}

TEST(ParseGroupKeyTail, CanonicalLayoutAndIndexOnly) {
  const GroupKeyTail t = Must(ParseGroupKeyTail("(2,4):(12,1)/3", 24));
  EXPECT_EQ(t.axis.ToString(), "(2,4):(12,1)");
  EXPECT_EQ(t.index, 3);
  for (const char* bad : {"(4):(1)", "(4):(1)/", "(4):(1)/01", "(4):(1)/-1", "(2,2):(2,1)/0",
                          "(48):(1)/0", "tp/0", "/0", "(4):(1)/99999999999999999999"}) {
    EXPECT_EQ(ParseGroupKeyTail(bad, 24).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(ChunkLeader, AsNcclSpreadsRanksOverIds) {
  auto leaders = [](int64_t members, int64_t ids) {
    std::vector<int64_t> out;
    for (int64_t c = 0; c < ids; ++c) out.push_back(ChunkLeader(members, ids, c));
    return out;
  };
  EXPECT_EQ(leaders(8, 1), (std::vector<int64_t>{0}));
  EXPECT_EQ(leaders(256, 2), (std::vector<int64_t>{0, 128}));  // k = 128 divides: member 128*i
  EXPECT_EQ(leaders(300, 3), (std::vector<int64_t>{0, 100, 200}));
  EXPECT_EQ(leaders(10, 3), (std::vector<int64_t>{0, 4, 7}));
  EXPECT_EQ(leaders(3, 3), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(ChunkCount(300, 128), 3);
  EXPECT_EQ(ChunkCount(300, 0), 1);
  EXPECT_EQ(ChunkCount(2, 1), 2);
}

}  // namespace
}  // namespace meshd::layout
