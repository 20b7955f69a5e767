// Mesh fingerprints, group keys and chunk leaders: a fingerprint rebuilds the mesh's group maths
// exactly (GroupIndex and GroupMember against GroupOf and Groups), for root and derived meshes; only
// canonical fingerprints of identity rank maps within the world are accepted.
#include "common/layout/mesh_spec.h"

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

TEST(MeshFromFingerprint, NotOneItCanRebuild_InvalidArgument) {
  const DeviceMesh table = FromTable({2}, {1, 0}, {"x"}, 2);
  for (const std::string& fp :
       {MeshFingerprint(table), std::string("fp"), std::string("identity(8)|[(2):(4), (4):(1)]"),
        std::string("identity(16)|[(16):(1)]|x"),        // larger than the world of 8
        std::string("identity(8)|[(2,2):(2,1)]|x"),       // not canonical: (4):(1)
        std::string("identity(8)|[(2):(4), (4):(1)]|x"),  // one name for two dims
        std::string("identity(8)|[(4):(2), (4):(1)]|a,b"),  // overlaps
        std::string("identity(8)|[(9223372036854775807):(1)]|x"),
        std::string("identity(8)|[(2):(4) (4):(1)]|a,b"), std::string("identity(-1)|[]|-")}) {
    absl::StatusOr<DeviceMesh> m = MeshFromFingerprint(fp, 8);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << fp;
  }
  EXPECT_THAT(std::string(MeshFromFingerprint(MeshFingerprint(table), 8).status().message()),
              HasSubstr("identity(N)"));
}

TEST(GroupKey, DimAndWorld) {
  EXPECT_EQ(GroupKey("m", "tp", 3), "m/tp/3");
  EXPECT_EQ(GroupKey("m+ids", kWorldGroupLabel, 0), "m+ids/world/0");
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
