// Simulated nodes (see nodes.h).
#include "bench/sim/nodes.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace meshd::bench {

std::string SimulatedNodeName(uint32_t node) { return absl::StrFormat("node-%05u", node); }

v1::RegisterNodeRequest SimulatedRegistration(uint32_t node, uint32_t gpus_per_node) {
  const std::string name = SimulatedNodeName(node);
  v1::RegisterNodeRequest req;
  v1::NodeInventory* inv = req.mutable_inventory();
  inv->set_node(name);
  inv->set_hostname(name);
  inv->set_agent_address(absl::StrCat("unix:/run/meshd/", name, ".sock"));
  inv->set_incarnation(1);
  for (uint32_t g = 0; g < gpus_per_node; ++g) {
    v1::Gpu* gpu = inv->add_gpus();
    gpu->set_index(g);
    gpu->set_uuid(absl::StrCat("GPU-sim-", name, "-", g));
    gpu->set_name("simulated GPU (meshd_bench)");
    gpu->set_simulated(true);
  }
  return req;
}

}  // namespace meshd::bench
