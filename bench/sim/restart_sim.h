// RestartSim: the coordinator restarted under a running job. Every simulated node registers again
// with the new coordinator, reporting the generation its workers run (RegisterNodeRequest.
// running_jobs), as agents do; the last report completes the job's recovery. Then GetJob must show
// the job running again at the same generation, every node at the rank it had.
#ifndef MESHD_BENCH_SIM_RESTART_SIM_H_
#define MESHD_BENCH_SIM_RESTART_SIM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshd::bench {

struct RestartOptions {
  std::string address;  // the restarted coordinator
  uint32_t nodes = 64;
  uint32_t gpus_per_node = 8;
  uint32_t channels = 4;
  std::string job = "bench";
  uint64_t generation = 0;
  std::vector<uint32_t> node_ranks;  // by node index, as the run before the restart left them
  absl::Duration timeout = absl::Minutes(5);
};

struct RestartResult {
  double t_recovered_s = 0;  // from the start until every registration was answered
  uint64_t rpcs = 0;
};

// FAILED_PRECONDITION when the job is not back as it was; the first failed registration fails the
// run; DEADLINE_EXCEEDED past the timeout.
absl::StatusOr<RestartResult> RunRestartSim(const RestartOptions& options);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_RESTART_SIM_H_
