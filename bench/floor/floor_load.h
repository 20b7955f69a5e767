// FloorLoad: N simulated nodes making the floor protocol's three exchanges (floor_protocol.h)
// against a FloorServer, over the connections meshd_bench would open, on gRPC's callback client
// API with its minimal stack (as meshd_bench's simulator). Every answer's size is checked.
#ifndef MESHD_BENCH_FLOOR_FLOOR_LOAD_H_
#define MESHD_BENCH_FLOOR_FLOOR_LOAD_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/floor/floor_protocol.h"

namespace meshd::bench::floor {

struct LoadOptions {
  std::string address;
  uint32_t nodes = 64;
  uint32_t channels = 4;
  bool session = false;  // one bidi stream per node instead of three unary calls
  Sizes sizes;
  absl::Duration timeout = absl::Minutes(5);  // the whole run's deadline
};

struct LoadResult {
  // Seconds from the start until every node's register, join and resolve was answered.
  double t_registered_s = 0;
  double t_joined_s = 0;
  double t_done_s = 0;
  uint64_t exchanges = 0;  // request-answer pairs (unary calls, or messages on the streams)
  uint64_t streams = 0;    // calls opened: 3 per node unary, 1 per node in sessions
  double load_cpu_s = 0;   // this process's CPU from the start until done
};

// DEADLINE_EXCEEDED (with how far it got) when the run does not finish in time; the first failed
// call or wrong-sized answer fails the run.
absl::StatusOr<LoadResult> RunFloorLoad(const LoadOptions& options);

}  // namespace meshd::bench::floor

#endif  // MESHD_BENCH_FLOOR_FLOOR_LOAD_H_
