// A KeyBatch's operations and results between coordinator.proto and domain/kv_ops.h.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_WIRE_KV_BATCH_CONVERT_H_
#define MESHD_DAEMON_WIRE_KV_BATCH_CONVERT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "daemon/domain/kv_ops.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::wire {

// The request's operations (their keys and values moved out of it). INVALID_ARGUMENT naming the
// operation: one with no operation set, or naming a job or generation other than the batch's.
absl::StatusOr<std::vector<domain::KvOp>> BatchOps(v1::KeyBatchRequest& req);

// The answer to `ops`: `results[i]` as the result of `ops[i]`'s kind.
v1::KeyBatchResponse BatchAnswer(const std::vector<domain::KvOp::Kind>& kinds,
                                 std::vector<domain::KvOpResult> results);

}  // namespace meshd::wire

#endif  // MESHD_DAEMON_WIRE_KV_BATCH_CONVERT_H_
