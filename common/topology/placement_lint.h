// Placement lint: for a mesh over a world whose ranks are laid out node-major (rank = node * G +
// local GPU, which is how meshd assigns ranks), which dims' groups stay inside one host and which
// cross hosts. Tensor parallelism across hosts is the classic performance mistake: its all-reduces
// run on every layer and leave NVLink for the network.
//
// Thread-safety: pure functions.
#ifndef MESHD_COMMON_TOPOLOGY_PLACEMENT_LINT_H_
#define MESHD_COMMON_TOPOLOGY_PLACEMENT_LINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/layout/device_mesh.h"

namespace meshd::topology {

enum class Placement {
  kIntraHost,  // every group on one host
  kCrossHost,  // every group spans several hosts
  kMixed,      // some groups stay on one host, others straddle two or more
};
std::string PlacementName(Placement p);  // "intra-host", "cross-host", "mixed"

struct DimPlacement {
  int dim = 0;
  std::string label;  // dim name, or "dim N"
  int64_t group_size = 1;
  int64_t min_hosts = 1;  // fewest hosts one group spans
  int64_t max_hosts = 1;  // most hosts one group spans
  Placement placement = Placement::kIntraHost;
  // A sentence for a person when the placement is likely a mistake, else empty.
  std::string warning;
};

// Errors: INVALID_ARGUMENT when gpus_per_node < 1.
absl::StatusOr<std::vector<DimPlacement>> LintPlacement(const layout::DeviceMesh& mesh,
                                                        int64_t gpus_per_node);

}  // namespace meshd::topology

#endif  // MESHD_COMMON_TOPOLOGY_PLACEMENT_LINT_H_
