// GPU discovery behind an interface: NVML loaded with dlopen (no build-time dependency on the
// driver), or GPUs declared with --simulate-gpus, which are marked simulated everywhere.
//
// Thread-safety: Discover() may be called from one thread at a time.
#ifndef MESHD_DAEMON_AGENT_GPU_GPU_DISCOVERY_H_
#define MESHD_DAEMON_AGENT_GPU_GPU_DISCOVERY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/domain/types.h"

namespace meshd::agent {

class GpuDiscovery {
 public:
  virtual ~GpuDiscovery() = default;
  virtual absl::StatusOr<std::vector<domain::Gpu>> Discover() = 0;
};

// Loads NVML from `library` (default "libnvidia-ml.so.1", found by the dynamic loader) and reads
// count, UUID, PCI bus id, name, memory and, where the driver reports it, the NVLink fabric clique.
// Errors: UNAVAILABLE the library cannot be loaded or lacks a symbol; FAILED_PRECONDITION NVML
// fails to initialise (no driver); NOT_FOUND no GPU.
std::unique_ptr<GpuDiscovery> NvmlDiscovery(std::string library = "libnvidia-ml.so.1");

// `count` simulated GPUs of `node`: UUID "SIM-<node>-<index>", simulated = true.
std::unique_ptr<GpuDiscovery> SimulatedDiscovery(int count, std::string node);

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_GPU_GPU_DISCOVERY_H_
