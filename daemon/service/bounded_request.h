// Requests read by the service itself, bounded by size before a byte is decoded: a method whose
// legitimate request is small (a heartbeat: a node's name and a number) takes its request as raw
// bytes, refuses one past its limit at the cost of looking at its length, and only then parses it.
// Decoding an 8 MiB heartbeat of millions of unknown fields held the heartbeats' lane for a
// quarter of a second each (bench/flood_bench.cc, issue 21).
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_SERVICE_BOUNDED_REQUEST_H_
#define MESHD_DAEMON_SERVICE_BOUNDED_REQUEST_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "daemon/domain/limits.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace meshd::service {

// A legitimate Heartbeat is a node name (at most 253 bytes) and an incarnation; a RegisterNode at
// most a node's inventory (its GPUs, each field bounded) and the generations its workers run.
inline constexpr size_t kMaxHeartbeatRequestBytes = 4 << 10;
inline constexpr size_t kMaxRegisterNodeRequestBytes = 2 << 20;
// The rest of the calls the coordinator parses itself: a join (names and counts), a key call (a
// key of at most 1 KiB, a participant as long), a set (its value of at most 4 MiB too), and a wait
// (at most 1,024 keys of 1 KiB), each with room for the fields around them.
inline constexpr size_t kMaxJoinJobRequestBytes = 16 << 10;
inline constexpr size_t kMaxKeyRequestBytes = 16 << 10;
inline constexpr size_t kMaxKeySetRequestBytes = (4 << 20) + (16 << 10);
inline constexpr size_t kMaxKeyWaitRequestBytes = (5 << 20) / 4;
// An agent's batch of its workers' store calls (domain/limits.h).
inline constexpr size_t kMaxKeyBatchRequestBytes = domain::kMaxBatchBytes;

// Parses `bytes` into `out`. INVALID_ARGUMENT when longer than `max_bytes` (nothing decoded) or not
// a message of `out`'s type, naming `method`.
absl::Status ParseBounded(const grpc::ByteBuffer& bytes, size_t max_bytes, absl::string_view method,
                          google::protobuf::Message* out);
grpc::ByteBuffer Serialize(const google::protobuf::Message& message);

}  // namespace meshd::service

#endif  // MESHD_DAEMON_SERVICE_BOUNDED_REQUEST_H_
