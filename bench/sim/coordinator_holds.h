// What a running coordinator holds, as an operator sees it: its status gauges and listings
// (GetStatus, ListNodes, ListJobs — what `meshctl status|nodes|jobs` print) and its metrics
// endpoint's series. The soak benchmark reads it before and after the churn to show that nothing
// removed is kept.
//
// Thread-safety: free functions; each call makes its own requests.
#ifndef MESHD_BENCH_SIM_COORDINATOR_HOLDS_H_
#define MESHD_BENCH_SIM_COORDINATOR_HOLDS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "meshd/v1/coordinator.grpc.pb.h"

namespace meshd::bench {

struct Holds {
  uint32_t nodes_listed = 0, jobs_listed = 0;  // ListNodes, ListJobs
  uint32_t nodes_alive = 0, nodes_dead = 0, nodes_left = 0;  // GetStatus
  uint32_t jobs_joining = 0, jobs_running = 0, waiters = 0;
  bool Empty() const {
    return nodes_listed + jobs_listed + nodes_alive + nodes_dead + nodes_left + jobs_joining +
               jobs_running + waiters ==
           0;
  }
  std::string ToString() const;
};

// Errors: the first failed call's.
absl::StatusOr<Holds> ReadHolds(v1::Coordinator::Stub& stub, absl::Duration timeout);

// Polls ReadHolds until it is Empty(); DEADLINE_EXCEEDED (saying what is left) past `timeout`.
// Returns how long it took.
absl::StatusOr<absl::Duration> WaitUntilEmpty(v1::Coordinator::Stub& stub, absl::Duration timeout);

struct Series {
  std::map<std::string, double> all;  // "name{labels}" -> value, as scraped
  // Series with a label naming one node or one job (node="..." or job="..."): each is kept for
  // something that may be removed.
  std::set<std::string> per_thing;
  // The coordinator's gauges of nodes, jobs and held calls summed (0 when it holds nothing).
  double held = 0;
};

// Scrapes the coordinator's metrics at `url` (http://).
absl::StatusOr<Series> ReadSeries(const std::string& url);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_COORDINATOR_HOLDS_H_
