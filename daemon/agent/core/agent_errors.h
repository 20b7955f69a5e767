// The agent core's error statuses: each names what was asked, what stands in the way and what to
// do, in one place so that the state machine (agent.cc) reads as decisions.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_AGENT_CORE_AGENT_ERRORS_H_
#define MESHD_DAEMON_AGENT_CORE_AGENT_ERRORS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "daemon/domain/types.h"

namespace meshd::agent::errors {

// INVALID_ARGUMENT: local_rank outside local_world.
absl::Status BadLocalRank(uint32_t local_rank, uint32_t local_world);
// FAILED_PRECONDITION: more workers than the node's GPUs.
absl::Status TooManyWorkers(const std::string& job, uint32_t local_world, const std::string& node,
                            size_t gpus);
// INVALID_ARGUMENT: a worker's sizes differ from the first worker's of the job.
absl::Status WorkersDisagree(const std::string& job, uint32_t first_local_world,
                             const domain::NodeCount& first_nodes, uint32_t local_world,
                             const domain::NodeCount& nodes);
// ALREADY_EXISTS: a live worker runs with this local rank, or one waits with it.
absl::Status RankRunning(const std::string& job, uint32_t local_rank, uint64_t generation,
                         const std::string& node);
absl::Status RankWaiting(const std::string& job, uint32_t local_rank, const std::string& node);
// CANCELLED: a later attach of the same worker process took (or keeps) the place.
absl::Status AttachSuperseded(uint32_t local_rank);
// PERMISSION_DENIED: the job belongs to another uid on this node.
absl::Status OtherUid(const std::string& job, const std::string& node, uint32_t owner,
                      uint32_t uid);
// ABORTED: the generation ended (`what` says what is gone with it, may be empty).
absl::Status GenerationEnded(const std::string& job, uint64_t generation,
                             const std::string& why, const std::string& what);
// FAILED_PRECONDITION: not attached to that generation.
absl::Status RankNotAttached(const std::string& job, uint32_t local_rank, uint64_t generation);
absl::Status NoWorkerAttached(const std::string& job, uint64_t generation);

}  // namespace meshd::agent::errors

#endif  // MESHD_DAEMON_AGENT_CORE_AGENT_ERRORS_H_
