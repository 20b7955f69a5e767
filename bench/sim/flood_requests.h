// The bad requests a flooding client sends: for every method of a gRPC service (from its compiled
// descriptor), bodies that are malformed (a varint past ten bytes, a length past the end, an
// end-of-group with no start, invalid UTF-8 in a string), just under the server's receive limit
// (one huge string or bytes field; millions of empty entries of a repeated field, or of unknown
// fields where the request has none) and just over it. Huge bodies share their filler: a few
// distinct 8 MiB blocks for every method, whatever the number of methods.
//
// Thread-safety: a built FloodRequests is immutable; its ByteBuffers may be copied from any thread.
#ifndef MESHD_BENCH_SIM_FLOOD_REQUESTS_H_
#define MESHD_BENCH_SIM_FLOOD_REQUESTS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/support/byte_buffer.h"

namespace meshd::bench {

struct FloodRequest {
  std::string method;  // "/meshd.v1.Coordinator/Heartbeat"
  std::string kind;    // "malformed", "huge_field", "many_empty", "oversized"
  grpc::ByteBuffer body;
  size_t bytes = 0;
};

// Every bad request for every method of `service` ("meshd.v1.Coordinator"), against a server that
// receives at most `max_receive_bytes`. NOT_FOUND when the service is not compiled in.
absl::StatusOr<std::vector<FloodRequest>> BuildFloodRequests(const std::string& service,
                                                             size_t max_receive_bytes);

}  // namespace meshd::bench

#endif  // MESHD_BENCH_SIM_FLOOD_REQUESTS_H_
