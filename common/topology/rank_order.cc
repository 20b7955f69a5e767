// Topology-aware rank order (see rank_order.h).
#include "common/topology/rank_order.h"

#include <algorithm>
#include <numeric>
#include <tuple>

namespace meshd::topology {

std::vector<size_t> TopologyOrder(const std::vector<NodePlacement>& nodes) {
  std::vector<size_t> order(nodes.size());
  std::iota(order.begin(), order.end(), 0);
  // Cliques are ordered by their first hostname, so a clique's nodes stay together and the order
  // among cliques still follows hostnames; nodes without a clique are ordered by hostname alone.
  auto first_host = [&](const std::string& clique) {
    std::string best;
    for (const NodePlacement& n : nodes) {
      if (n.clique == clique && (best.empty() || n.hostname < best)) best = n.hostname;
    }
    return best;
  };
  std::vector<std::string> group_key(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    group_key[i] = nodes[i].clique.empty() ? nodes[i].hostname : first_host(nodes[i].clique);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(group_key[a], nodes[a].clique, nodes[a].hostname, nodes[a].node) <
           std::tie(group_key[b], nodes[b].clique, nodes[b].hostname, nodes[b].node);
  });
  return order;
}

std::string NodeClique(const std::vector<std::string>& gpu_cliques) {
  if (gpu_cliques.empty()) return "";
  for (const std::string& c : gpu_cliques) {
    if (c != gpu_cliques.front()) return "";
  }
  return gpu_cliques.front();
}

}  // namespace meshd::topology
