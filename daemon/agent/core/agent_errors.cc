// The agent core's error statuses (see agent_errors.h).
#include "daemon/agent/core/agent_errors.h"

#include "absl/strings/str_cat.h"
#include "daemon/domain/limits.h"

namespace meshd::agent::errors {
namespace {

// A job name as it may be quoted back (it may not have been validated).
std::string Shown(const std::string& job) { return job.substr(0, domain::kMaxJobNameBytes); }

}  // namespace

absl::Status BadLocalRank(uint32_t local_rank, uint32_t local_world) {
  return absl::InvalidArgumentError(absl::StrCat("local_rank ", local_rank,
                                                 " must be below local_world ", local_world,
                                                 ", which must be at least 1"));
}

absl::Status TooManyWorkers(const std::string& job, uint32_t local_world, const std::string& node,
                            size_t gpus) {
  return absl::FailedPreconditionError(absl::StrCat("job '", Shown(job), "' asks for ",
                                                    local_world, " workers on node '", node,
                                                    "', which has ", gpus, " GPUs"));
}

absl::Status WorkersDisagree(const std::string& job, uint32_t first_local_world,
                             const domain::NodeCount& first_nodes, uint32_t local_world,
                             const domain::NodeCount& nodes) {
  return absl::InvalidArgumentError(absl::StrCat(
      "workers of job '", Shown(job), "' on this node disagree: local_world ", first_local_world,
      " and nodes ", first_nodes.min_nodes, ":", first_nodes.max_nodes,
      " were given first; this one asks for local_world ", local_world, " and nodes ",
      nodes.min_nodes, ":", nodes.max_nodes));
}

absl::Status RankRunning(const std::string& job, uint32_t local_rank, uint64_t generation,
                         const std::string& node) {
  return absl::AlreadyExistsError(absl::StrCat(
      "local rank ", local_rank, " of job '", Shown(job), "' runs in generation ", generation,
      " on node '", node, "' (a live worker holds it); each worker needs its own"));
}

absl::Status RankWaiting(const std::string& job, uint32_t local_rank, const std::string& node) {
  return absl::AlreadyExistsError(absl::StrCat("local rank ", local_rank, " of job '", Shown(job),
                                               "' is already attached on node '", node,
                                               "'; each worker needs its own"));
}

absl::Status AttachSuperseded(uint32_t local_rank) {
  return absl::CancelledError(absl::StrCat("superseded by a later attach of local rank ",
                                           local_rank, " from the same worker process"));
}

absl::Status OtherUid(const std::string& job, const std::string& node, uint32_t owner,
                      uint32_t uid) {
  return absl::PermissionDeniedError(absl::StrCat(
      "job '", Shown(job), "' on node '", node, "' belongs to uid ", owner,
      " (its first local worker's); a process of uid ", uid,
      " may not attach to it, watch it, detach from it or use its store (the agent's "
      "--allow-uids lets other uids in)"));
}

absl::Status GenerationEnded(const std::string& job, uint64_t generation, const std::string& why,
                             const std::string& what) {
  return absl::AbortedError(absl::StrCat("generation ", generation, " of job '", Shown(job),
                                         "' ended: ", why, what.empty() ? "" : "; ", what,
                                         "; re-attach"));
}

absl::Status RankNotAttached(const std::string& job, uint32_t local_rank, uint64_t generation) {
  return absl::FailedPreconditionError(absl::StrCat("local rank ", local_rank,
                                                    " is not attached to generation ", generation,
                                                    " of job '", Shown(job), "'; attach first"));
}

absl::Status NoWorkerAttached(const std::string& job, uint64_t generation) {
  return absl::FailedPreconditionError(
      absl::StrCat("no worker of this node is attached to generation ", generation, " of job '",
                   Shown(job), "'; attach first"));
}

}  // namespace meshd::agent::errors
