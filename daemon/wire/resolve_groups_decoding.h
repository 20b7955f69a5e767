// ResolveGroupsRequest read straight from the wire into the coordinator's domain types: no
// protobuf message (with an arena, a string per field and a message per rank, group and id) built
// and copied out of again. The coordinator reads one from every node of a mesh (16,384 of ~2.7 KB
// each at 16,384 nodes); parsing them with protobuf and converting was ~13% of its instructions
// (callgrind, bench/). It accepts exactly what protobuf's parser accepts and yields the same values
// — unknown fields skipped, the last of a repeated singular field kept, a repeated submessage
// merged, a field of the wrong wire type treated as unknown, invalid UTF-8 in a string field
// refused — which tests/unit/wire checks against protobuf on real, edited and truncated requests.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_WIRE_RESOLVE_GROUPS_DECODING_H_
#define MESHD_DAEMON_WIRE_RESOLVE_GROUPS_DECODING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/domain/types.h"
#include "grpcpp/support/byte_buffer.h"

namespace meshd::wire {

// A meshd.v1.ResolveGroupsRequest, as the coordinator core takes it.
struct ResolveGroupsCall {
  std::string job;
  uint64_t generation = 0;
  std::string node;
  std::string mesh_key;
  std::vector<domain::RankSpec> ranks;
  std::vector<domain::GroupRequest> groups;
  uint32_t partial_after_ms = 0;  // 0: answered whole
};

// INVALID_ARGUMENT, saying where, when the bytes are not a ResolveGroupsRequest protobuf would
// parse.
absl::StatusOr<ResolveGroupsCall> DecodeResolveGroupsRequest(absl::string_view bytes);
absl::StatusOr<ResolveGroupsCall> DecodeResolveGroupsRequest(const grpc::ByteBuffer& bytes);

}  // namespace meshd::wire

#endif  // MESHD_DAEMON_WIRE_RESOLVE_GROUPS_DECODING_H_
