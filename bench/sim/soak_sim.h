// SoakSim: churn against one real coordinator through the real gRPC protocol — jobs created and
// ended, node incarnations registered and let go, wave after wave, as a cluster does over months.
//
// A wave: `jobs_per_wave` fixed-size jobs of `nodes_per_job` simulated agents each. Every agent
// registers a new incarnation — half of them of names seen before (a pool the waves go round, so
// a name comes back after its old incarnation left, died or was removed), half of new names —
// heartbeats at the interval the coordinator tells it, joins its job, sets a key in the job's
// store and resolves a 2-GPU-per-node mesh's group ids (the coordinator's per-generation state);
// each job's first node watches its generation (WatchJob) until it ends.
// Then each job ends one of four ways, in turn:
//   finished  every member says its workers detached (FinishJob), then every agent stops (LeaveNode)
//   left      every agent stops (LeaveNode): the generation ends NODE_LEFT at the first
//   lost      the agents go silent: the coordinator declares them dead after the heartbeat timeout
//   ended     an operator ends the job (Admin.EndJob), then every agent stops (LeaveNode)
// Nothing waits for the coordinator's retention: removal goes on behind the next waves.
//
// Thread-safety: RunSoak runs on the caller's thread (plus one heartbeat thread of its own).
#ifndef MESHD_BENCH_SIM_SOAK_SIM_H_
#define MESHD_BENCH_SIM_SOAK_SIM_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshd::bench {

struct SoakOptions {
  std::string address;  // the coordinator, HOST:PORT or unix:PATH
  uint32_t jobs = 1000;
  uint32_t incarnations = 10000;  // a multiple of jobs: each job has incarnations / jobs nodes
  uint32_t jobs_per_wave = 10;
  uint32_t name_pool = 500;  // names the reused half goes round
  std::string prefix = "soak";  // of node and job names (a warm-up uses another)
  uint32_t channels = 4;
  absl::Duration call_timeout = absl::Seconds(30);  // one step of a wave
  // After each wave (for sampling the coordinator's memory); may be empty.
  std::function<void(uint32_t wave)> after_wave;
};

struct SoakResult {
  uint32_t waves = 0;
  uint32_t jobs = 0;          // created and ended
  uint32_t incarnations = 0;  // registered
  uint32_t reused_names = 0;  // registrations under a name registered before
  uint32_t ended_finished = 0, ended_left = 0, ended_lost = 0, ended_by_operator = 0;
  // What the jobs' watches were told, by GenerationEnd reason (a lost job's node may come back as
  // a new incarnation before the timeout: REASON_NODE_RESTARTED).
  std::map<std::string, uint64_t> generation_ends;
  uint64_t rpcs = 0;
  uint64_t heartbeats = 0;
  // Heartbeats answered with an error: one sent as its agent stopped (benign), or a live agent
  // declared dead (it should not be, at this load).
  uint64_t heartbeat_errors = 0;
  double seconds = 0;
};

// The first failed call (other than a heartbeat) fails the run, naming the call and the node.
absl::StatusOr<SoakResult> RunSoak(const SoakOptions& options);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_SOAK_SIM_H_
