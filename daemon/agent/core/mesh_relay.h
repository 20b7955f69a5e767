// MeshRelay: the node's side of the group-id exchange. Local workers' asks for one mesh of a
// generation are collected until every local worker asked, then sent as ONE ResolveGroups for the
// node (mesh_request.h merges them); each worker gets its own groups' ids from the answer. Asks
// still collecting expire at their deadline (once sent, the coordinator enforces it); a
// generation's end answers its asks ABORTED.
//
// Thread-safety: thread-safe; answers run outside the lock.
#ifndef MESHD_DAEMON_AGENT_CORE_MESH_RELAY_H_
#define MESHD_DAEMON_AGENT_CORE_MESH_RELAY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/agent/core/coordinator_client.h"
#include "daemon/agent/core/resender.h"
#include "meshd/v1/agent.pb.h"

namespace meshd::agent {

class MeshRelay {
 public:
  MeshRelay(std::string node, CoordinatorClient* client, Resender* resender)
      : node_(std::move(node)), client_(client), resender_(resender) {}

  // The ask of a worker attached to `request.generation()`, one of `local_world` on this node
  // whose first global rank is `first_rank`. Errors: ALREADY_EXISTS the local rank already asked
  // for this mesh; ABORTED the generation ended meanwhile.
  void Ask(v1::RankGroupsRequest request, uint32_t local_world, uint32_t first_rank,
           absl::Time deadline, Answer<v1::ResolveGroupsResponse> done) ABSL_LOCKS_EXCLUDED(mu_);
  // Every ask of `job` up to `generation` is answered with `why` (ABORTED, or CANCELLED at Stop).
  void End(const std::string& job, uint64_t generation, const absl::Status& why)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Answers DEADLINE_EXCEEDED the asks still collecting whose deadline passed.
  void Expire(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    v1::RankGroupsRequest request;
    Answer<v1::ResolveGroupsResponse> done;
    absl::Time deadline;
  };
  struct Mesh {
    uint32_t local_world = 0;
    bool sent = false;
    std::map<uint32_t, Pending> asks;  // local rank -> ask
  };
  // (job, generation, mesh key)
  using MeshId = std::tuple<std::string, uint64_t, std::string>;

  void Send(const MeshId& id, absl::Time deadline, v1::ResolveGroupsRequest request) ABSL_LOCKS_EXCLUDED(mu_);
  void Answered(const MeshId& id, absl::StatusOr<v1::ResolveGroupsResponse> answer)
      ABSL_LOCKS_EXCLUDED(mu_);

  const std::string node_;
  CoordinatorClient* const client_;
  Resender* const resender_;

  absl::Mutex mu_;
  std::map<MeshId, Mesh> meshes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> ended_ ABSL_GUARDED_BY(mu_);  // job -> last ended generation
};

}  // namespace meshd::agent

#endif  // MESHD_DAEMON_AGENT_CORE_MESH_RELAY_H_
