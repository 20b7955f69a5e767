// ResolveGroupsResponse written straight from the core's shared group records, without building
// the message: one buffer per answer instead of a GroupIds message, a key string and an id string
// per group, sized, serialized and freed again. The coordinator answers every node of a
// 16,384-node mesh this way (~26 groups and 3-4 KB each). Byte-for-byte what protobuf writes for
// the same message (tests/unit/wire checks it).
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_WIRE_GROUP_IDS_ENCODING_H_
#define MESHD_DAEMON_WIRE_GROUP_IDS_ENCODING_H_

#include <vector>

#include "daemon/domain/types.h"
#include "grpcpp/support/byte_buffer.h"

namespace meshd::wire {

// The encoded meshd.v1.ResolveGroupsResponse holding `groups`, in order.
grpc::ByteBuffer EncodeResolveGroupsResponse(
    const std::vector<domain::SharedGroupIds>& groups);

}  // namespace meshd::wire

#endif  // MESHD_DAEMON_WIRE_GROUP_IDS_ENCODING_H_
