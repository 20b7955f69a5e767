// Workload: what the simulated cluster asks the coordinator for — the mesh (named dims over
// nodes x gpus_per_node ranks) and, for every node rank, the one ResolveGroups request its agent
// would send: its local ranks' specs and the union of their groups (every dim's group plus the
// world group, keyed as libmeshd_client keys them), with random 128-byte ids minted by each
// chunk's leader (the benchmark measures meshd, not ncclGetUniqueId).
#ifndef MESHD_BENCH_SIM_WORKLOAD_H_
#define MESHD_BENCH_SIM_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::bench {

struct WorkloadOptions {
  uint32_t nodes = 64;
  uint32_t gpus_per_node = 8;
  // "pp=4,dp=-1,cp=2,tp=8": names and sizes in order, one -1 for "the rest". Empty: the default
  // pp=4,dp=-1,cp=2,tp=G when the world allows it, else dp=-1,tp=G.
  std::string shape;
  bool world_group = true;  // libmeshd_client also resolves a world group with every mesh
  // Members per id, as ClientOptions::ranks_per_id; 0 (the client's default): one id per group.
  uint32_t ranks_per_id = 0;
  std::string mesh_key = "bench";
};

struct Workload {
  std::vector<std::pair<std::string, int64_t>> dims;  // resolved shape
  std::string description;                            // e.g. "DeviceMesh((pp=4, ...))"
  uint64_t world_size = 0;
  uint64_t groups = 0;  // distinct groups (all dims + world)
  uint64_t ids = 0;     // ids minted in all
  // By node rank: the request without job, generation and node (filled in when sent).
  std::vector<v1::ResolveGroupsRequest> requests;
};

// "pp=4,dp=-1,cp=2,tp=8" -> dims; INVALID_ARGUMENT naming what to fix.
absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> ParseShape(absl::string_view shape,
                                                                       uint64_t world_size);

absl::StatusOr<Workload> BuildWorkload(const WorkloadOptions& options);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_WORKLOAD_H_
