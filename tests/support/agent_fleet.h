// AgentFleet: real `meshd agent` processes (node0, node1, ...) with simulated GPUs against one
// coordinator, and a raw_attach_worker per GPU attached to one job — the cluster the integration
// tests kill parts of.
#ifndef MESHD_TESTS_SUPPORT_AGENT_FLEET_H_
#define MESHD_TESTS_SUPPORT_AGENT_FLEET_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/subprocess.h"

namespace meshd::testing {

// A `meshd coordinator` started with `argv` (its path first), once it serves; `address` gets where.
absl::StatusOr<std::unique_ptr<process::Subprocess>> StartCoordinator(
    const std::vector<std::string>& argv, std::string* address, const std::string& log = "");

struct AgentFleet {
  std::vector<std::unique_ptr<process::Subprocess>> agents;
  std::vector<std::string> sockets;                           // agent i's unix socket
  std::vector<std::unique_ptr<process::Subprocess>> workers;  // agent i's at i * gpus + local rank

  // Starts `agents` agents of `gpus` simulated GPUs each (sockets and logs under `dir`: agent i's
  // stderr is appended to `dir`/agent<i>.log), waits until each serves, then one worker per GPU
  // attaching to `job` (a job of `agents` nodes).
  absl::Status Start(const std::string& meshd, const std::string& worker,
                     const std::string& coordinator, const std::string& dir, int agents, int gpus,
                     const std::string& job);
};

}  // namespace meshd::testing

#endif  // MESHD_TESTS_SUPPORT_AGENT_FLEET_H_
