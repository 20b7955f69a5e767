// MintRules: which of a mesh's groups a node may ask for and which of their ids it may mint, from
// the mesh its ranks reported (their spec's fingerprint, which every rank must share). A group's
// key names a dim and a group of the mesh ("<mesh key>/<dim>/<index>", or the world group
// "<mesh key>/world/0"); chunk i of a group is minted by its leader, the member
// layout::ChunkLeader picks, and only the node that holds that rank may report its id or why it
// could not mint one.
//
// Cost: building parses the fingerprint (once per mesh); checking a report is
// O((ranks + groups + minted ids) x ndim), whatever the world's size.
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
  // The rules of the mesh `fingerprint` describes, exchanged as `mesh_key` by a world of
  // `world_size` ranks. `where` ("mesh 'm' of job 'j'") starts every error.
  // Errors: INVALID_ARGUMENT when the fingerprint does not describe a mesh the coordinator can
  // rebuild (see layout::MeshFromFingerprint).
  static absl::StatusOr<MintRules> Create(const std::string& fingerprint,
                                          const std::string& mesh_key, uint32_t world_size,
                                          std::string where);

  // One node's report, before anything of it is recorded. `ranks` are the node's own (checked by
  // the caller), `groups` already well-formed (ids of the right size and index).
  // Errors: INVALID_ARGUMENT a key that is not a group of the mesh, or more ids than members;
  // PERMISSION_DENIED a group none of the ranks is a member of, or an id (or mint error) of a
  // chunk whose leader the node does not hold (naming the group, the chunk and the leader rank).
  absl::Status Check(const std::string& node, const std::vector<RankSpec>& ranks,
                     const std::vector<GroupRequest>& groups) const;

 private:
  MintRules(layout::DeviceMesh mesh, std::string prefix, uint32_t world_size, std::string where);

  // A group of the mesh: a dim's (dim >= 0) or the world's (dim == -1).
  struct Target {
    int dim = -1;
    int64_t index = 0;
    int64_t members = 0;
  };
  absl::StatusOr<Target> Find(const std::string& key) const;
  int64_t Member(const Target& t, int64_t member) const;

  layout::DeviceMesh mesh_;
  std::vector<std::string> labels_;  // by dim
  std::string prefix_;               // "<mesh key>/"
  uint32_t world_size_ = 0;
  std::string where_;
};

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_MINT_RULES_H_
