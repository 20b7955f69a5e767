// ClusterSim: N simulated nodes of G GPUs talking to a real coordinator through the real gRPC
// protocol, as agents do for their workers: RegisterNode, Heartbeat at the interval the coordinator
// asks for, JoinJob for all local workers, then one ResolveGroups per node with its ranks' groups
// and the ids its chunk leaders minted. Every answer is checked: node ranks form a permutation,
// each group's ids come back complete, identical on every node, and equal to what their leader
// minted. Simulated nodes share a few channels; each still sends its own requests.
#ifndef MESHD_BENCH_SIM_CLUSTER_SIM_H_
#define MESHD_BENCH_SIM_CLUSTER_SIM_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/sim/workload.h"

namespace meshd::bench {

struct SimOptions {
  std::string address;        // the coordinator, HOST:PORT or unix:PATH
  uint32_t nodes = 64;
  uint32_t gpus_per_node = 8;
  uint32_t channels = 4;  // connections shared by the simulated nodes
  std::string job = "bench";
  // Register every node first (agents are a standing service), then start the job: the job's own
  // figures then exclude connecting and registering, as on a running cluster.
  bool register_first = false;
  absl::Duration timeout = absl::Minutes(5);  // the whole run's deadline
  // Node i is SimulatedNodeName(first_node + i): two simulations side by side use disjoint ranges.
  uint32_t first_node = 0;
  // When set, runs once every node holds its ids, on the run's thread: the job stays up (its nodes
  // heartbeating) until it returns. A failed heartbeat meanwhile fails the run.
  std::function<void()> while_running;
  // When set, called for every heartbeat answered OK (from gRPC's threads) with how long its
  // answer took.
  std::function<void(double latency_s)> on_heartbeat;
  // A late node: the node given this rank holds its ResolveGroups back until every other node
  // holds every group id the late node does not mint (SimResult::t_others_ids_s), then sends it.
  // -1: none.
  int64_t withhold_node_rank = -1;
  // ResolveGroupsRequest.partial_after_ms, as agents send it (MeshRelay::kPartialAfter); a node
  // answered in part asks again for the groups still missing, as an agent does. Zero: every
  // request answered whole.
  absl::Duration partial_after = absl::Seconds(1);
};

struct SimResult {
  // Seconds from the start of the run until every node registered, until every node knows its
  // rank (its JoinJob answered), until every node holds every group id of its ranks.
  double t_registered_s = 0;
  double t_first_registered_s = 0;  // the first answer: connecting and the first call
  double t_ranks_s = 0;
  double t_ids_s = 0;
  // When the first JoinJob went out (0 unless register_first: then after every registration).
  double t_job_start_s = 0;
  uint64_t rpcs = 0;        // every RPC sent, heartbeats included
  uint64_t heartbeats = 0;
  uint64_t groups_checked = 0;
  // With withhold_node_rank: when every other node held every group id the late node does not
  // mint (without partial answers only the nodes asking for none of its groups can: -1 when there
  // are none), and how many nodes ask for a group it mints.
  double t_others_ids_s = 0;
  uint32_t nodes_waiting_for_late = 0;
  // ResolveGroups answered in part, each followed by a request for the rest.
  uint64_t partial_answers = 0;
  // CPU seconds this process (the simulated agents, all of them) spent from the start of the run
  // until every node held its ids: the load the simulator puts on the machine beside the
  // coordinator, which on a real cluster would be spread over the agents' own hosts.
  double sim_cpu_s = 0;
  // Where the run left the job: its generation and each node's rank (by node index).
  uint64_t generation = 0;
  std::vector<uint32_t> node_ranks;
};

// Runs one rendezvous of one job over the whole simulated cluster. The first failed RPC or check
// fails the run (with what failed and where); in-flight calls are cancelled before returning.
// The workload's requests are sent (moved out of it); the rest of it is left as it was.
absl::StatusOr<SimResult> RunClusterSim(const SimOptions& options, Workload* workload);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_CLUSTER_SIM_H_
