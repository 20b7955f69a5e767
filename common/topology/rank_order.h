// Topology-aware rank order for a job's nodes: nodes of one NVLink clique adjacent (so that inner
// mesh dims stay inside an NVLink domain), then by hostname, then by node name for determinism.
// Global rank = position in this order * local_world + local rank (GPUs within a node by index).
//
// Thread-safety: pure functions.
#ifndef MESHD_COMMON_TOPOLOGY_RANK_ORDER_H_
#define MESHD_COMMON_TOPOLOGY_RANK_ORDER_H_

#include <string>
#include <vector>

namespace meshd::topology {

struct NodePlacement {
  std::string node;
  std::string hostname;
  // The node's NVLink fabric clique, or "" when it has none (see NodeClique).
  std::string clique;
};

// The order of `nodes` (indices into it) in which ranks are assigned.
std::vector<size_t> TopologyOrder(const std::vector<NodePlacement>& nodes);

// A node's clique: the GPUs' common clique id, or "" when they have none or disagree (then the node
// cannot be placed by clique, exactly as NVIDIA's GPU feature discovery labels nodes).
std::string NodeClique(const std::vector<std::string>& gpu_cliques);

}  // namespace meshd::topology

#endif  // MESHD_COMMON_TOPOLOGY_RANK_ORDER_H_
