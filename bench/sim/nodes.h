// The simulated nodes' identities and registrations, shared by the cluster simulator and the
// coordinator-restart simulator: node i is "node-%05u" (sorts like its index) with G simulated
// GPUs, registered as its agent registers it once its GPUs are discovered.
#ifndef MESHD_BENCH_SIM_NODES_H_
#define MESHD_BENCH_SIM_NODES_H_

#include <cstdint>
#include <string>

#include "meshd/v1/coordinator.pb.h"

namespace meshd::bench {

std::string SimulatedNodeName(uint32_t node);
v1::RegisterNodeRequest SimulatedRegistration(uint32_t node, uint32_t gpus_per_node);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_NODES_H_
