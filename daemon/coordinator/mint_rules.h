// MintRules: which groups of a root mesh a node may ask for and which of their ids it may mint,
// from the mesh its ranks reported (their spec's fingerprint, which every rank must share). A
// group's key names the root, a dim layout inside it and a group of that dim ("<mesh key>/<layout>/
// <index>", layout::GroupKey), so any view of the root — a slice, a flatten, an unflatten — asks
// under the same key for the same group; or it is the world group ("world/0"). Chunk i of a group
// is minted by its leader, the member layout::ChunkLeader picks, and only the node that holds that
// rank may report its id or why it could not mint one.
//
// Cost: building parses the fingerprint (once per mesh); checking a report is
// O(distinct dim layouts x (ranks + ndim)) + O(groups x (log ranks + minted ids)), whatever the
// world's size; a report may name at most kMaxLayoutsPerReport distinct dim layouts.
//
// Thread-safety: an immutable value.
#ifndef MESHD_DAEMON_COORDINATOR_MINT_RULES_H_
#define MESHD_DAEMON_COORDINATOR_MINT_RULES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/layout/device_mesh.h"
#include "daemon/coordinator/types.h"

namespace meshd::coordinator {

class MintRules {
 public:
  static constexpr size_t kMaxLayoutsPerReport = 64;

  // The rules of the mesh `fingerprint` describes, exchanged as `mesh_key` by a world of
  // `world_size` ranks. `where` ("mesh 'm' of job 'j'") starts every error.
  // Errors: INVALID_ARGUMENT when the fingerprint does not describe a mesh the coordinator can
  // rebuild (see layout::MeshFromFingerprint).
  static absl::StatusOr<MintRules> Create(const std::string& fingerprint,
                                          const std::string& mesh_key, uint32_t world_size,
                                          std::string where);

  // One node's report, before anything of it is recorded. `ranks` are the node's own (checked by
  // the caller), `groups` already well-formed (ids of the right size and index).
  // Errors: INVALID_ARGUMENT a key that is not a group of the mesh, more ids than members, or more
  // than kMaxLayoutsPerReport dim layouts;
  // PERMISSION_DENIED a group none of the ranks is a member of, or an id (or mint error) of a
  // chunk whose leader the node does not hold (naming the group, the chunk and the leader rank).
  // On success `leaders` holds, for each group in order, its chunks' leader ranks.
  absl::Status Check(const std::string& node, const std::vector<RankSpec>& ranks,
                     const std::vector<GroupRequest>& groups,
                     std::vector<std::vector<uint32_t>>* leaders) const;

  // The world ranks in the root mesh (those a spec-only check waits for).
  int64_t mesh_ranks() const { return mesh_.rank_map().size(); }
  bool InMesh(uint32_t rank) const { return mesh_.rank_map().position_of(rank).has_value(); }

 private:
  MintRules(layout::DeviceMesh mesh, std::string prefix, uint32_t world_size, std::string where);

  layout::DeviceMesh mesh_;  // the root
  std::string prefix_;       // "<mesh key>/"
  uint32_t world_size_ = 0;
  std::string where_;
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_MINT_RULES_H_
