// Conversions between meshd.v1 messages and the coordinator core's domain types, and between
// absl::Status and grpc::Status, shared by the gRPC services and the agent's coordinator client.
// Translation only: no decisions are made here.
//
// Thread-safety: pure functions.
#ifndef MESHD_DAEMON_WIRE_CONVERT_H_
#define MESHD_DAEMON_WIRE_CONVERT_H_

#include <chrono>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "daemon/domain/types.h"
#include "daemon/domain/views.h"
#include "grpcpp/support/status.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::wire {

grpc::Status ToGrpc(const absl::Status& s);
absl::Status FromGrpc(const grpc::Status& s);

domain::NodeInventory FromProto(const v1::NodeInventory& p);
void ToProto(const domain::NodeInventory& d, v1::NodeInventory* p);
domain::NodeCount FromProto(const v1::NodeCount& p);
void ToProto(const domain::NodeCount& d, v1::NodeCount* p);
domain::RunningJob FromProto(const v1::RunningJob& p);
void ToProto(const domain::RunningJob& d, v1::RunningJob* p);
void ToProto(const domain::JoinRequest& d, v1::JoinJobRequest* p);
domain::JoinRequest FromProto(const v1::JoinJobRequest& p);
// The member list only when the request asked for it (JoinJobRequest.with_members).
void ToProto(const domain::Assignment& d, bool with_members, v1::Assignment* p);
domain::Assignment FromProto(const v1::Assignment& p);
void ToProto(const domain::GenerationEnd& d, v1::GenerationEnd* p);
void ToProto(const domain::JobView& d, v1::JobStatus* p);
void ToProto(const domain::NodeView& d, v1::NodeStatus* p);
domain::GroupRequest FromProto(const v1::GroupRequest& p);
domain::EndReason FromProto(v1::GenerationEnd::Reason r);
void ToProto(const std::vector<domain::SharedGroupIds>& d, v1::ResolveGroupsResponse* p);

// The time by which a call must be answered: the client's deadline, capped at now + max_wait so
// that a call without a deadline still ends.
absl::Time CallDeadline(std::chrono::system_clock::time_point client_deadline, absl::Time now,
                        absl::Duration max_wait);

}  // namespace meshd::wire

#endif  // MESHD_DAEMON_WIRE_CONVERT_H_
