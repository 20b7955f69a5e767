// What ranks and the coordinator agree on about a mesh's NCCL groups: the mesh's fingerprint (its
// canonical form, which the coordinator compares across ranks and can rebuild the mesh from), the
// key of each group, and which member leads each chunk of a group (and mints that chunk's id).
//
//   MeshFingerprint(init_device_mesh((2,4), ("dp","tp")))  == "identity(8)|[(2):(4), (4):(1)]|dp,tp"
//   GroupKey("m", "tp", 1)                                 == "m/tp/1"  (the world group: "m/world/0")
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
// An identity rank map is written out ("identity(N)"), an explicit table as its size and a hash.
std::string MeshFingerprint(const DeviceMesh& mesh);

// The mesh a fingerprint describes, with the group maths of the mesh it was taken from (its root's
// flatten registry is not part of it). Only an identity rank map can be rebuilt.
// Errors: INVALID_ARGUMENT when the text is not a fingerprint MeshFingerprint writes, names an
// explicit rank table, or a mesh larger than `world_size`.
absl::StatusOr<DeviceMesh> MeshFromFingerprint(absl::string_view fingerprint, int64_t world_size);

// "<mesh key>/<dim label>/<group index>": the key under which a group's ids are exchanged.
std::string GroupKey(absl::string_view mesh_key, absl::string_view dim_label, int64_t index);

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
