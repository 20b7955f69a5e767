// GenerationWatches: WatchJob streams the soak simulator keeps open — one per job, as an agent
// watches its job's running generation — each answered by the coordinator when the generation
// ends (at once for an end the simulator brings about, after the heartbeat timeout for a lost
// node). The ends are counted by reason.
//
// The watches belong to this object and are destroyed on the thread that destroys it, after each
// finished (see calls_in_flight.h for why not on gRPC's).
//
// Thread-safety: Start, WaitAll and Ends from one thread; the reactors run on gRPC's.
#ifndef MESHD_BENCH_SIM_GENERATION_WATCHES_H_
#define MESHD_BENCH_SIM_GENERATION_WATCHES_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::bench {

class GenerationWatches {
 public:
  GenerationWatches();
  ~GenerationWatches();  // cancels the watches left, waits until every one finished
  GenerationWatches(const GenerationWatches&) = delete;
  GenerationWatches& operator=(const GenerationWatches&) = delete;

  // Watches `generation` of `job` as member `node` (with its agent's secret) until `deadline`.
  void Start(v1::Coordinator::Stub* stub, const std::string& job, uint64_t generation,
             const std::string& node, const std::string& secret,
             std::chrono::system_clock::time_point deadline);
  // Until every watch started has finished. The first watch that finished without an end (its
  // error, or a stream closed with none) is the error.
  absl::Status WaitAll();
  // Ends received, by reason (GenerationEnd.Reason's name).
  std::map<std::string, uint64_t> Ends();

 private:
  class Watch;
  void Finished(const v1::GenerationEnd* end, const std::string& job, const grpc::Status& s);

  absl::Mutex mu_;
  std::vector<std::unique_ptr<Watch>> watches_;  // touched by this object's thread only
  uint64_t open_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, uint64_t> ends_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_GENERATION_WATCHES_H_
