// AgentFleet (see agent_fleet.h).
#include "tests/support/agent_fleet.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace meshd::testing {

absl::StatusOr<std::unique_ptr<process::Subprocess>> StartCoordinator(
    const std::vector<std::string>& argv, std::string* address, const std::string& log) {
  auto coordinator = process::Subprocess::Start(argv, log);
  if (!coordinator.ok()) return coordinator.status();
  auto listening =
      (*coordinator)->WaitForLine("meshd coordinator listening on ", absl::Seconds(20));
  if (!listening.ok()) return listening.status();
  *address = *listening;
  return coordinator;
}

absl::Status AgentFleet::Start(const std::string& meshd, const std::string& worker,
                               const std::string& coordinator, const std::string& dir,
                               int num_agents, int gpus, const std::string& job) {
  std::error_code ignored;
  std::filesystem::create_directories(dir, ignored);  // for the logs; the agents make it too
  for (int i = 0; i < num_agents; ++i) {
    sockets.push_back(absl::StrCat(dir, "/agent", i, ".sock"));
    auto agent = process::Subprocess::Start(
        {meshd, "agent", "--coordinator", coordinator, "--socket", sockets.back(),
         "--simulate-gpus", absl::StrCat(gpus), "--node-name", absl::StrCat("node", i)},
        absl::StrCat(dir, "/agent", i, ".log"));
    if (!agent.ok()) return agent.status();
    agents.push_back(*std::move(agent));
    auto up = agents.back()->WaitForLine("meshd agent listening on ", absl::Seconds(20));
    if (!up.ok()) return up.status();
  }
  for (int i = 0; i < num_agents; ++i) {
    for (int r = 0; r < gpus; ++r) {
      auto w = process::Subprocess::Start(
          {worker, sockets[i], job, absl::StrCat(r), absl::StrCat(gpus), absl::StrCat(num_agents)});
      if (!w.ok()) return w.status();
      workers.push_back(*std::move(w));
    }
  }
  return absl::OkStatus();
}

}  // namespace meshd::testing
