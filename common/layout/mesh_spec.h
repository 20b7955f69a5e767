// What ranks and the coordinator agree on about a mesh's NCCL groups: the mesh's fingerprint (its
// canonical form, which the coordinator compares across ranks and can rebuild the mesh from), the
// key of each group, and which member leads each chunk of a group (and mints that chunk's id).
//
//   MeshFingerprint(init_device_mesh((2,4), ("dp","tp")))  == "identity(8)|[(2):(4), (4):(1)]|dp,tp"
//   MeshFingerprint(DeviceMesh(mesh=[[3,1],[0,2]]))        == "ranks(3,1,0,2)|[(2):(2), (2):(1)]|-"
//   GroupKey("m", (4):(1), 1)                              == "m/(4):(1)/1"  (the world's: "world/0")
//   ChunkLeader(300 members, 3 ids, chunk 2)               == member 200
//   ChunkLeader(10 members, 3 ids, chunks 0,1,2)           == members 0, 4, 7
//
// Thread-safety: pure functions.
#ifndef MESHD_COMMON_LAYOUT_MESH_SPEC_H_
#define MESHD_COMMON_LAYOUT_MESH_SPEC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/layout/device_mesh.h"

namespace meshd::layout {

// The label of the group of every rank of the world, which a client resolves besides its dims'.
inline constexpr absl::string_view kWorldGroupLabel = "world";

// Canonical form of a mesh (root rank map, layout, names): equal on ranks that built the same mesh.
// An identity rank map is written "identity(N)", an explicit table in full ("ranks(3,1,0,2)"), so
// that the coordinator can rebuild any mesh and know its groups' members.
std::string MeshFingerprint(const DeviceMesh& mesh);

// Explicit rank tables are exchanged up to this many ranks (their fingerprint lists every rank;
// a table that is the identity, however large, is written "identity(N)").
inline constexpr int64_t kMaxExchangedTableRanks = 16384;

// The mesh a fingerprint describes, with the group maths of the mesh it was taken from (its root's
// flatten registry is not part of it).
// Errors: INVALID_ARGUMENT when the text is not a fingerprint MeshFingerprint writes, lists more
// than kMaxExchangedTableRanks ranks, or describes a mesh larger than `world_size`.
absl::StatusOr<DeviceMesh> MeshFromFingerprint(absl::string_view fingerprint, int64_t world_size);

// The key under which a group's ids are exchanged: what the group IS — the root mesh it was cut
// from (`root_key`: the root's name or "#n"), the layout of its dim inside that root, and which of
// that dim's groups — not the view it was reached through. A slice, a flatten or a concatenation
// of one root reaches the same key for the same group, so views share ids and communicators.
//   GroupKey("train", (4):(1), 3) == "train/(4):(1)/3"
std::string GroupKey(absl::string_view root_key, const FlatLayout& axis, int64_t index);
// The world group (every rank of the generation, in rank order): one per generation, whatever mesh
// asked for it.
inline constexpr absl::string_view kWorldGroupKey = "world/0";

// A group key's part after "<root key>/": the dim's layout and the group's index, checked against a
// root of `n` positions. Errors: INVALID_ARGUMENT when it is not "<layout>/<index>" as GroupKey
// writes it (canonical layout, index without leading zeros), or the layout does not fit in `n`.
struct GroupKeyTail {
  FlatLayout axis;
  int64_t index = 0;
};
absl::StatusOr<GroupKeyTail> ParseGroupKeyTail(absl::string_view tail, int64_t n);

// How many ids a group of `members` ranks gets at `ranks_per_id` members per id (0: one id).
int64_t ChunkCount(int64_t members, int64_t ranks_per_id);
// The member (index into the group's ranks, in mesh order) that leads chunk `chunk` of a group of
// `members` ranks split into `num_ids` chunks, and so mints its id: the first rank that NCCL's
// ncclCommInitRankScalable assigns to that id's bootstrap root (members / num_ids ranks per id,
// the first members % num_ids chunks one more). Member chunk * k when k ranks per id divide the
// group. @pre 1 <= num_ids <= members, 0 <= chunk < num_ids.
int64_t ChunkLeader(int64_t members, int64_t num_ids, int64_t chunk);

}  // namespace meshd::layout

#endif  // MESHD_COMMON_LAYOUT_MESH_SPEC_H_
