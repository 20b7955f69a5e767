// Read-only views of the cluster as the coordinator answers them (GetStatus, ListJobs, ListNodes,
// metrics), and of a node agent. Plain data: the cores build them, daemon/wire turns them into protos.
#ifndef MESHD_DAEMON_DOMAIN_VIEWS_H_
#define MESHD_DAEMON_DOMAIN_VIEWS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "daemon/domain/types.h"

namespace meshd::domain {

// kRecovering: the coordinator restarted while the generation ran; its nodes report it back.
enum class JobPhase { kJoining, kRunning, kRecovering };

// A running generation's key-value store (GetJob): what it holds, and what its callers wait for.
struct StoreView {
  struct WaitedKey {
    std::string key;
    uint32_t waiting = 0;  // held operations waiting for it
  };
  uint64_t keys = 0;
  uint64_t bytes = 0;
  uint64_t waiting = 0;  // held operations: gets, waits, barriers, held batches'
  // The keys most waited for, most operations first, then by key (empty unless asked for).
  std::vector<WaitedKey> most_waited;
};

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
  bool has_store = false;  // GetJob of a running generation
  StoreView store;
};

struct NodeView {
  NodeInventory inventory;
  bool alive = true;
  absl::Duration since_heard;
  uint32_t restarts = 0;
  std::vector<std::string> jobs;
  bool cordoned = false;      // an operator took it out of service: it joins no new rounds
  std::string cordon_reason;  // theirs
  bool left = false;          // not alive because its agent stopped cleanly (not a failure)
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
  uint64_t partial_answers = 0;  // ResolveGroups calls answered in part (partial_after_ms)
  uint64_t generations_started = 0;
  uint64_t generations_ended = 0;
  uint64_t generations_recovered = 0;
};

struct StatusView {
  absl::Duration uptime;
  uint32_t nodes_alive = 0;
  uint32_t nodes_dead = 0;
  uint32_t nodes_left = 0;      // departed: their agents stopped cleanly
  uint32_t nodes_cordoned = 0;  // alive or dead
  uint32_t jobs_joining = 0;
  uint32_t jobs_running = 0;
  uint32_t waiters = 0;  // waiting.total()
  WaiterCounts waiting;
  Counters counters;
  absl::Duration heartbeat_timeout;
};

// A node agent at a glance (its GetStatus, metrics).
struct AgentView {
  NodeInventory inventory;
  std::string coordinator;
  bool connected = false;
  struct Worker {
    std::string job;
    uint32_t local_rank = 0;
    uint64_t generation = 0;  // 0 while waiting
    uint32_t rank = 0;
  };
  std::vector<Worker> workers;
  // Totals since the agent started, for metrics.
  uint64_t registrations = 0;
  uint64_t heartbeats = 0;  // answered by the coordinator
  uint64_t heartbeat_failures = 0;
  uint64_t key_calls = 0;         // store calls from local workers
  uint64_t key_calls_shared = 0;  // of those, sent within another worker's coordinator call
  uint64_t key_coordinator_calls = 0;  // coordinator calls (batches) that carried them
};

}  // namespace meshd::domain

#endif  // MESHD_DAEMON_DOMAIN_VIEWS_H_
