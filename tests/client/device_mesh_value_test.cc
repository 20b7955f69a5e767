// meshd::DeviceMesh as a value, with no daemon (issue 23): the local constructors (a rank table in
// any order over any subset of the world), every per-dim call by index, negative index, name and
// flattened name, the root mesh, and a hash consistent with ==; the C ABI's mesh functions. The
// expected values are PyTorch's.
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "meshd/client.h"
#include "meshd/client_c.h"

namespace meshd {
namespace {

using ::testing::HasSubstr;
using Rows = std::vector<std::vector<int64_t>>;
using Ranks = std::vector<int64_t>;

DeviceMesh Must(absl::StatusOr<DeviceMesh> m) {
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : *DeviceMesh::Create({1}, {}, 0, 1);
}

template <typename T>
T Must(absl::StatusOr<T> v) {
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *std::move(v) : T{};
}

std::pair<DeviceMesh, int> Must(absl::StatusOr<std::pair<DeviceMesh, int>> r) {
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : std::pair<DeviceMesh, int>(*DeviceMesh::Create({1}, {}, 0, 1), 0);
}

// init_device_mesh((2,2,2), ("pp","dp","tp")) as rank 5 sees it (coordinate (1,0,1)).
DeviceMesh Rank5() { return Must(DeviceMesh::Create({2, 2, 2}, {"pp", "dp", "tp"}, 5, 8)); }

TEST(DeviceMeshValue, EveryDimArgument_IndexNegativeIndexName) {
  const DeviceMesh m = Rank5();
  EXPECT_EQ(m.rank(), 5);
  EXPECT_EQ(m.coordinate(), (Ranks{1, 0, 1}));
  for (const MeshDim& d : {MeshDim(0), MeshDim(-3), MeshDim("pp")}) {
    EXPECT_EQ(Must(m.size(d)), 2);
    EXPECT_EQ(Must(m.local_rank(d)), 1);
    EXPECT_EQ(Must(m.group_ranks(d)), (Ranks{1, 5}));
    EXPECT_EQ(Must(m.all_group_ranks(d)), (Rows{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  }
  for (const MeshDim& d : {MeshDim(1), MeshDim(-2), MeshDim("dp")}) {
    EXPECT_EQ(Must(m.group_ranks(d)), (Ranks{5, 7}));
    EXPECT_EQ(Must(m.local_rank(d)), 0);
    EXPECT_EQ(Must(m.all_group_ranks(d)), (Rows{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  }
  EXPECT_EQ(Must(m.group_ranks(-1)), (Ranks{4, 5}));
  EXPECT_EQ(Must(m.group_ranks("tp")), (Ranks{4, 5}));
}

TEST(DeviceMeshValue, BadDims_InvalidArgumentListingTheValidOnes) {
  const DeviceMesh m = Rank5();
  const std::string repr = "DeviceMesh((pp=2, dp=2, tp=2), stride=(4, 2, 1))";
  absl::StatusOr<int64_t> s = m.size(3);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.status().message(), "dim 3 is out of range for " + repr +
                                      ", which has 3 dims (valid: -3..2, a name of ('pp', 'dp', "
                                      "'tp'))");
  EXPECT_EQ(m.local_rank(-4).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.all_group_ranks(1000).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.group_ranks("xx").status().message()),
              HasSubstr("dim 'xx' is not a dim of " + repr));
  const DeviceMesh unnamed = Must(DeviceMesh::Create({2, 4}, {}, 0, 8));
  EXPECT_THAT(std::string(unnamed.size("tp").status().message()),
              HasSubstr("which has no dim names (valid: -2..1)"));
}

TEST(DeviceMeshValue, FlattenedNames_FromEveryMeshOfTheRoot) {
  // PyTorch: after mesh["dp","tp"]._flatten(), get_group("dp_tp") / get_local_rank("dp_tp") work
  // on every mesh of that root.
  const DeviceMesh m = Rank5();
  const DeviceMesh flat = Must(Must(m.Slice({"dp", "tp"})).Flatten());
  for (const DeviceMesh& from : {m, Must(m.Slice({"pp"})), flat}) {
    EXPECT_EQ(Must(from.size("dp_tp")), 4);
    EXPECT_EQ(Must(from.group_ranks("dp_tp")), (Ranks{4, 5, 6, 7}));
    EXPECT_EQ(Must(from.local_rank("dp_tp")), 1);
    EXPECT_EQ(Must(from.all_group_ranks("dp_tp")), (Rows{{0, 1, 2, 3}, {4, 5, 6, 7}}));
    const std::pair<DeviceMesh, int> r = Must(from.ResolveDim("dp_tp"));
    EXPECT_EQ(r.first, flat);
    EXPECT_EQ(r.second, 0);
    EXPECT_EQ(r.first.key(), flat.key());  // the same groups as Flatten's mesh
  }
  EXPECT_THAT(std::string(Must(m.Slice({"pp"})).size("x").status().message()),
              HasSubstr("or a flattened dim of its root: ('dp_tp')"));
  // Own dims resolve to the mesh itself.
  const std::pair<DeviceMesh, int> own = Must(m.ResolveDim(-1));
  EXPECT_EQ(own.second, 2);
  EXPECT_EQ(own.first.key(), m.key());
}

TEST(DeviceMeshValue, RankTables_SubsetAndPermuted) {
  // DeviceMesh("cpu", [[4,5],[6,7]], ("dp","tp")) in a world of 8, as rank 7 and as rank 2.
  const DeviceMesh r7 = Must(DeviceMesh::FromRankTable({2, 2}, {4, 5, 6, 7}, {"dp", "tp"}, 7, 8));
  EXPECT_EQ(r7.coordinate(), (Ranks{1, 1}));
  EXPECT_EQ(Must(r7.group_ranks("dp")), (Ranks{5, 7}));
  EXPECT_EQ(Must(r7.all_group_ranks("dp")), (Rows{{4, 6}, {5, 7}}));
  EXPECT_EQ(Must(r7.view()), (Ranks{4, 5, 6, 7}));
  const DeviceMesh r2 = Must(DeviceMesh::FromRankTable({2, 2}, {4, 5, 6, 7}, {"dp", "tp"}, 2, 8));
  EXPECT_EQ(r2.coordinate(), std::nullopt);
  EXPECT_EQ(r2.local_rank("tp").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Must(r2.view()), (Ranks{4, 5, 6, 7}));  // one copy: every rank sees it
  EXPECT_EQ(r2, r7);                                // the same mesh, another rank's view
  EXPECT_EQ(r2.key(), r7.key());                    // the same on every rank
  // [[3,1],[0,2]]: rank 0 has coordinate (1,0) and local ranks (0,0).
  const DeviceMesh p = Must(DeviceMesh::FromRankTable({2, 2}, {3, 1, 0, 2}, {"a", "b"}, 0, 4));
  EXPECT_EQ(p.coordinate(), (Ranks{1, 0}));
  EXPECT_EQ(Must(p.local_rank("a")), 0);
  EXPECT_EQ(Must(p.local_rank("b")), 0);
  EXPECT_EQ(Must(p.all_group_ranks("a")), (Rows{{3, 0}, {1, 2}}));
  EXPECT_EQ(Must(Must(p.Flatten()).group_ranks(0)), (Ranks{3, 1, 0, 2}));
  // init_device_mesh equals the arange table, not a permutation of it.
  EXPECT_EQ(Must(DeviceMesh::FromRankTable({2, 2}, {0, 1, 2, 3}, {"a", "b"}, 0, 4)),
            Must(DeviceMesh::Create({2, 2}, {"a", "b"}, 3, 4)));
  EXPECT_NE(p, Must(DeviceMesh::Create({2, 2}, {"a", "b"}, 0, 4)));
}

TEST(DeviceMeshValue, LocalConstructorErrors) {
  EXPECT_THAT(std::string(DeviceMesh::Create({2, 2}, {}, 4, 4).status().message()),
              HasSubstr("rank 4 is outside the world [0, 4)"));
  EXPECT_THAT(std::string(DeviceMesh::Create({2, 4}, {}, 0, 4).status().message()),
              HasSubstr("does not fit in a world of 4"));
  EXPECT_THAT(std::string(DeviceMesh::FromRankTable({2}, {1, 1}, {}, 0, 4).status().message()),
              HasSubstr("rank 1 appears twice"));
  EXPECT_THAT(std::string(DeviceMesh::FromRankTable({2, 2}, {0, 1}, {}, 0, 4).status().message()),
              HasSubstr("holds 2 ranks, not 4"));
  EXPECT_THAT(std::string(DeviceMesh::FromRankTable({2}, {0, 9}, {}, 0, 4).status().message()),
              HasSubstr("outside the world"));
  EXPECT_THAT(
      std::string(DeviceMesh::FromRankTable({2}, {0, 1}, {"a", "b"}, 0, 4).status().message()),
      HasSubstr("name 2 dims, but the mesh has 1"));
}

TEST(DeviceMeshValue, RootMesh) {
  const DeviceMesh m = Rank5();
  EXPECT_EQ(m.root(), m);
  EXPECT_EQ(m.root().key(), m.key());
  const DeviceMesh tp = Must(m.Slice({"tp"}));
  EXPECT_EQ(tp.root(), m);
  EXPECT_EQ(tp.root().key(), m.key());
  EXPECT_EQ(tp.root().rank(), 5);
  const DeviceMesh u = Must(Must(Must(m.Slice({"dp", "tp"})).Flatten()).Unflatten(0, {4}, {"w"}));
  EXPECT_EQ(u.root(), m);
  EXPECT_EQ(Must(DeviceMesh::Concatenate({tp, Must(m.Slice({"pp"}))})).root(), m);
  // The root's registry came along: the flattened name slices from it.
  EXPECT_TRUE(tp.root().Slice({"dp_tp"}).ok());
}

TEST(DeviceMeshValue, HashConsistentWithEquality) {
  const DeviceMesh m5 = Rank5();
  const DeviceMesh m0 = Must(DeviceMesh::Create({2, 2, 2}, {"pp", "dp", "tp"}, 0, 8));
  EXPECT_EQ(m5, m0);  // ranks see one value (PyTorch's __eq__ has no rank in it)
  EXPECT_EQ(m5.Hash(), m0.Hash());
  EXPECT_EQ(std::hash<DeviceMesh>{}(m5), m5.Hash());
  EXPECT_EQ(absl::HashOf(m5), absl::HashOf(m0));
  const DeviceMesh tp5 = Must(m5.Slice({"tp"}));
  const DeviceMesh tp0 = Must(m0.Slice({"tp"}));
  EXPECT_EQ(tp5, tp0);  // rank 5's [4,5] and rank 0's [0,1] are one mesh["tp"]
  EXPECT_EQ(tp5.Hash(), tp0.Hash());
  const DeviceMesh other = Must(DeviceMesh::Create({2, 4}, {"pp", "dp"}, 0, 8));
  std::unordered_set<DeviceMesh> set = {m5, m0, tp5, tp0, other};
  EXPECT_EQ(set.size(), 3u);
  absl::flat_hash_set<DeviceMesh> flat_set = {m5, m0, tp5, tp0, other};
  EXPECT_EQ(flat_set.size(), 3u);
  std::unordered_map<DeviceMesh, std::string> names;
  names[tp5] = "tp";
  EXPECT_EQ(names.at(tp0), "tp");
  // A slice and a user table over the same ranks differ (PyTorch: different rank maps).
  const DeviceMesh table = Must(DeviceMesh::FromRankTable({2}, {4, 5}, {"tp"}, 5, 8));
  EXPECT_NE(tp5, table);
}

// ---- The C ABI's mesh functions (issue 23), with no client.

TEST(MeshCAbi, FromRanksDeriveAndInspect) {
  char err[256] = {};
  // DeviceMesh("cpu", [[3,1],[0,2]], ("a","b")) as rank 0 of 4.
  const int64_t shape[] = {2, 2};
  const int64_t ranks[] = {3, 1, 0, 2};
  const char* names[] = {"a", "b"};
  meshd_mesh* m = nullptr;
  ASSERT_EQ(meshd_mesh_from_ranks(shape, 2, ranks, 4, names, 0, 4, &m, err, sizeof err), 0) << err;
  EXPECT_EQ(meshd_mesh_ndim(m), 2);
  char text[64];
  EXPECT_EQ(meshd_mesh_to_string(m, text, sizeof text), 37u);
  EXPECT_STREQ(text, "DeviceMesh((a=2, b=2), stride=(2, 1))");
  EXPECT_EQ(meshd_mesh_to_string(m, text, 11), 37u);  // cut, NUL-terminated
  EXPECT_STREQ(text, "DeviceMesh");
  int64_t coords[4] = {-1, -1, -1, -1};
  size_t n = 99;
  ASSERT_EQ(meshd_mesh_coordinate(m, coords, 4, &n, err, sizeof err), 0) << err;
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(coords[0], 1);
  EXPECT_EQ(coords[1], 0);
  int64_t group[4] = {};
  int64_t group_rank = -1;
  ASSERT_EQ(meshd_mesh_group_ranks(m, 0, "a", group, 4, &n, &group_rank, err, sizeof err), 0)
      << err;
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(group[0], 3);
  EXPECT_EQ(group[1], 0);
  EXPECT_EQ(group_rank, 0);  // among the sorted [0, 3]
  ASSERT_EQ(meshd_mesh_group_ranks(m, -1, nullptr, group, 4, &n, &group_rank, err, sizeof err), 0);
  EXPECT_EQ(group[0], 0);
  EXPECT_EQ(group[1], 2);
  int64_t size = 0;
  ASSERT_EQ(meshd_mesh_size(m, 1, nullptr, &size, err, sizeof err), 0);
  EXPECT_EQ(size, 2);
  EXPECT_EQ(meshd_mesh_size(m, 2, nullptr, &size, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("(valid: -2..1, a name of ('a', 'b'))"));

  // flatten, then the flattened name from a slice; unflatten back; slice; root.
  meshd_mesh* flat = nullptr;
  ASSERT_EQ(meshd_mesh_flatten(m, nullptr, &flat, err, sizeof err), 0) << err;
  ASSERT_EQ(meshd_mesh_group_ranks(flat, 0, nullptr, group, 4, &n, &group_rank, err, sizeof err),
            0);
  EXPECT_EQ((std::vector<int64_t>(group, group + 4)), (Ranks{3, 1, 0, 2}));
  EXPECT_EQ(group_rank, 0);
  const char* b[] = {"b"};
  meshd_mesh* sb = nullptr;
  ASSERT_EQ(meshd_mesh_slice(m, b, 1, &sb, err, sizeof err), 0) << err;
  ASSERT_EQ(meshd_mesh_size(sb, 0, "a_b", &size, err, sizeof err), 0) << err;
  EXPECT_EQ(size, 4);
  const int64_t sizes[] = {2, 2};
  const char* xy[] = {"x", "y"};
  meshd_mesh* u = nullptr;
  ASSERT_EQ(meshd_mesh_unflatten(flat, 0, "a_b", sizes, xy, 2, &u, err, sizeof err), 0) << err;
  ASSERT_EQ(meshd_mesh_group_ranks(u, 0, "x", group, 4, &n, &group_rank, err, sizeof err), 0);
  EXPECT_EQ((std::vector<int64_t>(group, group + 2)), (Ranks{3, 0}));
  meshd_mesh* root = nullptr;
  ASSERT_EQ(meshd_mesh_root(u, &root, err, sizeof err), 0);
  EXPECT_EQ(meshd_mesh_equal(root, m), 1);
  EXPECT_EQ(meshd_mesh_equal(u, m), 0);  // other names
  EXPECT_EQ(meshd_mesh_hash(root), meshd_mesh_hash(m));
  // Errors, with the maths' messages.
  const char* ba[] = {"b", "a"};
  meshd_mesh* bad = nullptr;
  EXPECT_EQ(meshd_mesh_slice(m, ba, 2, &bad, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("root mesh's order"));
  EXPECT_EQ(meshd_mesh_flatten(m, "a", &bad, err, sizeof err), 3);
  const int64_t three[] = {3};
  const char* z[] = {"z"};
  EXPECT_EQ(meshd_mesh_unflatten(m, 0, nullptr, three, z, 1, &bad, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("cannot unflatten dim a"));
  EXPECT_EQ(bad, nullptr);
  for (meshd_mesh* h : {m, flat, sb, u, root}) meshd_mesh_free(h);
}

TEST(MeshCAbi, NonMembersAndBadArguments) {
  char err[256] = {};
  const int64_t shape[] = {2};
  const int64_t ranks[] = {4, 5};
  meshd_mesh* m = nullptr;
  ASSERT_EQ(meshd_mesh_from_ranks(shape, 1, ranks, 2, nullptr, 0, 8, &m, err, sizeof err), 0)
      << err;
  size_t n = 99;
  ASSERT_EQ(meshd_mesh_coordinate(m, nullptr, 0, &n, err, sizeof err), 0);
  EXPECT_EQ(n, 0u);  // rank 0 is not in [4,5]: PyTorch's None
  EXPECT_EQ(meshd_mesh_group_ranks(m, 0, nullptr, nullptr, 0, &n, nullptr, err, sizeof err), 9);
  EXPECT_THAT(std::string(err), HasSubstr("rank 0 is not in the mesh"));
  meshd_mesh* bad = nullptr;
  EXPECT_EQ(meshd_mesh_from_ranks(shape, 1, ranks, 2, nullptr, 9, 8, &bad, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("rank 9 is outside the world"));
  const int64_t dup[] = {1, 1};
  EXPECT_EQ(meshd_mesh_from_ranks(shape, 1, dup, 2, nullptr, 0, 8, &bad, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("appears twice"));
  // More ranks than the world, or than dims a mesh may have: refused before copying.
  EXPECT_EQ(meshd_mesh_from_ranks(shape, 1, ranks, 1000000, nullptr, 0, 8, &bad, err, sizeof err),
            3);
  EXPECT_THAT(std::string(err), HasSubstr("the world's 8 ranks"));
  EXPECT_EQ(meshd_mesh_from_ranks(shape, 65, ranks, 2, nullptr, 0, 8, &bad, err, sizeof err), 3);
  const char* names[] = {"x", nullptr};
  EXPECT_EQ(meshd_mesh_slice(m, names, 2, &bad, err, sizeof err), 3);
  EXPECT_THAT(std::string(err), HasSubstr("name 1 is NULL"));
  EXPECT_EQ(meshd_mesh_slice(m, names, 1, &bad, err, sizeof err), 9);  // an unnamed mesh
  EXPECT_EQ(meshd_mesh_slice(nullptr, names, 1, &bad, err, sizeof err), 3);
  EXPECT_EQ(meshd_mesh_flatten(m, nullptr, nullptr, err, sizeof err), 3);
  EXPECT_EQ(bad, nullptr);
  meshd_mesh_free(m);
}

}  // namespace
}  // namespace meshd
