// Domain types of the coordinator core. They mirror meshd.v1 messages but carry no protobuf, so the
// core stays free of gRPC; daemon/service converts between the two.
#ifndef MESHD_DAEMON_COORDINATOR_TYPES_H_
#define MESHD_DAEMON_COORDINATOR_TYPES_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshd::coordinator {

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
};

enum class EndReason { kNodeLost, kNodeRestarted, kNodeJoining, kNodeLeft, kShutdown };
std::string EndReasonName(EndReason r);

struct GenerationEnd {
  std::string job;
  uint64_t generation = 0;
  EndReason reason = EndReason::kNodeLost;
  std::string node;
  std::string message;
};

// kRecovering: the coordinator restarted while the generation ran; its nodes report it back.
enum class JobPhase { kJoining, kRunning, kRecovering };

struct JobView {
  std::string job;
  JobPhase phase = JobPhase::kJoining;
  uint64_t generation = 0;
  NodeCount nodes;
  std::vector<Member> members;       // joiners (JOINING) or members in rank order (RUNNING)
  std::vector<std::string> missing;  // previous members not joined again (JOINING)
  absl::Duration in_phase;
  uint32_t world_size = 0;
  bool has_last_end = false;
  GenerationEnd last_end;
};

struct NodeView {
  NodeInventory inventory;
  bool alive = true;
  absl::Duration since_heard;
  uint32_t restarts = 0;
  std::vector<std::string> jobs;
};

// Calls held open, by what they wait for.
struct WaiterCounts {
  uint32_t join = 0;    // JoinJob until the round closes (and standby nodes)
  uint32_t kv = 0;      // KeyGet with wait, Barrier
  uint32_t groups = 0;  // ResolveGroups until every rank reported
  uint32_t watch = 0;   // WatchJob until the generation ends
  uint32_t total() const { return join + kv + groups + watch; }
};

// Running totals since the coordinator started (they only grow).
struct Counters {
  uint64_t ids_relayed = 0;      // NCCL unique ids handed out in ResolveGroups answers
  uint64_t groups_answered = 0;  // ResolveGroups calls answered with ids
  uint64_t generations_started = 0;
  uint64_t generations_ended = 0;
  uint64_t generations_recovered = 0;
};

struct StatusView {
  absl::Duration uptime;
  uint32_t nodes_alive = 0;
  uint32_t nodes_dead = 0;
  uint32_t jobs_joining = 0;
  uint32_t jobs_running = 0;
  uint32_t waiters = 0;  // waiting.total()
  WaiterCounts waiting;
  Counters counters;
  absl::Duration heartbeat_timeout;
};

enum class EventKind {
  kNodeRegistered,
  kNodeRestarted,
  kNodeBack,  // re-registered after it was declared dead
  kNodeLost,  // heartbeat timeout
  kJobCreated,
  kNodeJoined,   // joined a job's open round
  kNodeStandby,  // waits for the next round of an elastic job at its max
  kGenerationStarted,
  kGenerationEnded,
  kJobRecovering,        // a node reported a generation this (restarted) coordinator did not know
  kGenerationRecovered,  // every node of it did: it runs again
};
// "node_registered", ...: the name logs and metrics use.
const char* EventKindName(EventKind kind);

// A state transition, for logs and metrics (delivered outside the core's lock).
struct Event {
  EventKind kind = EventKind::kNodeRegistered;
  std::string what;  // a sentence
  std::string job;   // "" when not about a job
  std::string node;  // "" when not about a node
  uint64_t generation = 0;
  // kGenerationStarted: how long the job had no running generation (round open to close).
  absl::Duration rendezvous;
  // kGenerationEnded: why.
  EndReason reason = EndReason::kNodeLost;
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
using EventSink = std::function<void(const Event&)>;

}  // namespace meshd::coordinator

#endif  // MESHD_DAEMON_COORDINATOR_TYPES_H_
