// StoreSim: N simulated nodes of G ranks running PyTorch's start-up (StoreWorkload) through
// meshd's key-value store on a real coordinator, over the real gRPC protocol. Each simulated node
// runs its agent's own relay (agent/core/store_relay.h, StoreRelay) for its G workers, so it sends
// the coordinator exactly what the agent would: the node's calls as batches, identical waits as
// one operation. First every node registers and joins the job (as agents do before workers get
// their ranks), then the store workload runs, timed on its own. Every answer is checked: each get
// returns the leader's id, and no barrier's wait returns before every member of its group sent
// its add.
//
// Simulated nodes share a few channels (as meshd_bench's do); each still sends its own requests.
// Thread-safety: RunStoreSim is a blocking call; run one at a time per workload.
#ifndef MESHD_BENCH_SIM_STORE_SIM_H_
#define MESHD_BENCH_SIM_STORE_SIM_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/sim/store_workload.h"

namespace meshd::bench {

struct StoreSimOptions {
  std::string address;  // the coordinator, HOST:PORT or unix:PATH
  uint32_t channels = 4;
  std::string job = "store-bench";
  absl::Duration timeout = absl::Minutes(5);  // the whole run's deadline
  // Called once every node has joined, just before the store workload's clock starts (e.g. to
  // read the coordinator's CPU time).
  std::function<void()> on_store_start;
  // Every second of the store workload, a line on stderr: ranks done, calls sent.
  bool progress = false;
  // The agent's relay batches its workers' calls (StoreRelay, as agents run it); false: every call
  // on its own (identical waits still shared), as the agent sends to a coordinator without KeyBatch.
  bool batch = true;
};

struct StoreSimResult {
  // From the run's start: every node registered, every node's JoinJob answered.
  double t_registered_s = 0;
  double t_joined_s = 0;
  // The store workload: from its first call until the last rank finished its last call.
  double store_s = 0;
  // What the simulated workers asked their agents for (c10d Store calls).
  uint64_t rank_adds = 0, rank_sets = 0, rank_waits = 0, rank_gets = 0;
  uint64_t rank_calls() const { return rank_adds + rank_sets + rank_waits + rank_gets; }
  // What the agents sent the coordinator: batches, or (without batching) each call on its own.
  uint64_t key_batches = 0;
  uint64_t key_adds = 0, key_sets = 0, key_waits = 0, key_gets = 0, key_others = 0;
  uint64_t coordinator_calls() const {
    return key_batches + key_adds + key_sets + key_waits + key_gets + key_others;
  }
  uint64_t heartbeats = 0;  // over the whole run
  // CPU seconds of this process (every simulated node) during the store workload.
  double sim_cpu_s = 0;
  uint64_t generation = 0;
};

// Nodes: workload.world_size / workload.gpus_per_node. The first failed RPC or check fails the
// run (saying what failed and where); calls in flight are cancelled before it returns.
absl::StatusOr<StoreSimResult> RunStoreSim(const StoreSimOptions& options,
                                           const StoreWorkload& workload);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_STORE_SIM_H_
