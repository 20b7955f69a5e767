// FloorServer: a bare gRPC server for the floor protocol (floor_protocol.h), built the way meshd's
// coordinator serves its held calls (async API, calls spread over several completion queues, a
// thread per queue, a held round answered by the thread that completes it), minus everything
// meshd does with the bytes. What it costs per call is what gRPC itself costs on this machine.
//
// Thread-safety: Start once; the server runs until the process ends.
#ifndef MESHD_BENCH_FLOOR_FLOOR_SERVER_H_
#define MESHD_BENCH_FLOOR_FLOOR_SERVER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "bench/floor/floor_protocol.h"

namespace meshd::bench::floor {

struct ServerOptions {
  std::string listen = "127.0.0.1:0";
  uint32_t nodes = 64;  // a held round answers when this many nodes are in it
  Sizes sizes;
  int completion_queues = 8;  // as meshd's coordinator
};

// Starts serving; returns the bound HOST:PORT. The server and its threads live until the process
// exits (the benchmark's parent ends it).
absl::StatusOr<std::string> StartFloorServer(const ServerOptions& options);

}  // namespace meshd::bench::floor

#endif  // MESHD_BENCH_FLOOR_FLOOR_SERVER_H_
