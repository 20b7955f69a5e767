// The domain types meshd's daemons share: a node's inventory, a job's assignment, the end of a
// generation, a mesh's group requests. They mirror meshd.v1 messages but carry no protobuf; only
// daemon/wire converts between the two. The coordinator's state machine and the agent's core both
// speak them, and neither depends on the other.
#ifndef MESHD_DAEMON_DOMAIN_TYPES_H_
#define MESHD_DAEMON_DOMAIN_TYPES_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshd::domain {

struct Gpu {
  uint32_t index = 0;
  std::string uuid;
  std::string pci_bus_id;
  std::string name;
  uint64_t memory_bytes = 0;
  std::string nvlink_clique;
  bool simulated = false;
};

struct NodeInventory {
  std::string node;
  std::string hostname;
  std::string agent_address;
  uint64_t incarnation = 0;
  std::vector<Gpu> gpus;
};

// min == max: fixed size. Elastic otherwise.
struct NodeCount {
  uint32_t min_nodes = 0;
  uint32_t max_nodes = 0;
  absl::Duration last_call = absl::Seconds(1);
  bool elastic() const { return min_nodes != max_nodes; }
  friend bool operator==(const NodeCount&, const NodeCount&) = default;
};

// A generation a node's workers run, reported when its agent registers again (see RegisterNode).
struct RunningJob {
  std::string job;
  uint64_t generation = 0;
  uint32_t node_rank = 0;
  uint32_t num_nodes = 0;
  uint32_t local_world = 0;
  NodeCount nodes;
  // The coordinator's proof that the node was given this place (Assignment::membership_token);
  // a restarted coordinator that has its key accepts the report only with it.
  std::string membership_token;
};

struct JoinRequest {
  std::string job;
  std::string node;
  uint64_t incarnation = 0;
  uint32_t local_world = 0;
  NodeCount nodes;
};

struct Member {
  std::string node;
  std::string hostname;
  uint32_t node_rank = 0;
  uint32_t local_world = 0;
  std::string nvlink_clique;
};

struct Assignment {
  std::string job;
  uint64_t generation = 0;
  uint32_t world_size = 0;
  uint32_t node_rank = 0;
  uint32_t local_world = 0;
  uint32_t num_nodes = 0;
  // Every member in rank order; one list shared by every answer of a generation (a 16,384-node
  // round answers 16,384 joins without copying it).
  std::shared_ptr<const std::vector<Member>> members;
  // For the agent only (never shown to workers): the coordinator's signature of this node's place
  // in this generation, which the agent presents when it reports the generation to a restarted
  // coordinator (RunningJob). Empty when the coordinator signs none (no --membership-key).
  std::string membership_token;
};

enum class EndReason {
  kNodeLost,
  kNodeRestarted,
  kNodeJoining,
  kNodeLeft,
  kShutdown,
  kNodeDrained,  // an operator drained a member node
  kJobEnded,     // an operator ended the job
  kJobFinished,  // every member node's workers detached cleanly
  kMeshMismatch,  // ranks built different meshes under one key after some were answered
};
std::string EndReasonName(EndReason r);

struct GenerationEnd {
  std::string job;
  uint64_t generation = 0;
  EndReason reason = EndReason::kNodeLost;
  std::string node;
  std::string message;
};

// One rank's spec of a mesh (see meshd.v1.MeshSpec).
struct RankSpec {
  uint32_t rank = 0;
  std::string fingerprint;
  std::string description;
};

// A group whose NCCL ids a node needs, with the ids its ranks minted (chunk index -> 128 bytes).
struct GroupRequest {
  std::string key;
  uint32_t num_ids = 1;
  std::vector<std::pair<uint32_t, std::string>> minted;
  std::string mint_error;  // a leader that could not mint says why
};

struct GroupIds {
  std::string key;
  std::vector<std::string> ids;
};
// A group's ids as answered: immutable and shared by every answer naming the group (a 2,048-rank
// group's ids are not copied 2,048 times).
using SharedGroupIds = std::shared_ptr<const GroupIds>;

using JoinDone = std::function<void(absl::StatusOr<Assignment>)>;
using GroupsDone = std::function<void(absl::StatusOr<std::vector<SharedGroupIds>>)>;
using WatchDone = std::function<void(const GenerationEnd&)>;
using StatusDone = std::function<void(absl::Status)>;
using BytesDone = std::function<void(absl::StatusOr<std::string>)>;

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_TYPES_H_
