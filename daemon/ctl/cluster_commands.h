// meshctl's cluster commands: `status`, `nodes`, `jobs`, `job NAME` against a coordinator,
// `status` against a node agent's socket, and the operators' verbs (`node cordon|uncordon|drain|
// forget NAME`, `job end NAME`), and `leave` on an agent's socket. Human tables by default, JSON (the protobuf messages with
// their .proto field names) with --json.
//
// Thread-safety: pure functions apart from the RPC.
#ifndef MESHD_DAEMON_CTL_CLUSTER_COMMANDS_H_
#define MESHD_DAEMON_CTL_CLUSTER_COMMANDS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "meshd/v1/agent.pb.h"
#include "meshd/v1/coordinator.pb.h"

namespace meshd::ctl {

struct ClusterTarget {
  std::string address;  // "HOST:PORT" or "unix:/path"
  bool agent = false;   // an agent's socket rather than the coordinator
  absl::Duration timeout = absl::Seconds(10);
  // For a coordinator's TCP address (mutual TLS in production); nullptr: plaintext. An agent's
  // unix socket is always plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

// Runs `command` ("status", "nodes", "jobs", "job") with `arg` (the job name for "job").
// Errors: the RPC's status (UNAVAILABLE when the target cannot be reached, NOT_FOUND for an unknown
// job, ...) with a message saying what was being asked of whom; INVALID_ARGUMENT for a command the
// target does not serve.
absl::StatusOr<std::string> RunClusterCommand(const std::string& command, const std::string& arg,
                                              const ClusterTarget& target, bool json);

// Runs an operator's verb (meshd.v1.Admin) on the coordinator: "cordon", "uncordon", "drain" or
// "forget" node `name`, or "end" job `name`; `reason` for cordon, drain and end. Answers the
// coordinator's summary of what changed (JSON: the AdminResponse). Errors: the RPC's status with a
// message naming what was asked of whom (PERMISSION_DENIED: the caller is not an operator).
absl::StatusOr<std::string> RunAdminCommand(const std::string& verb, const std::string& name,
                                            const std::string& reason,
                                            const ClusterTarget& target, bool json);

// `leave` on an agent's socket (meshd.v1.Agent/Leave): this host's node leaves the cluster before
// its agent stops (the DaemonSet's preStop hook). Answers the agent's summary (JSON: the
// LeaveResponse). Errors: INVALID_ARGUMENT `target` is not an agent's socket; the RPC's status
// (PERMISSION_DENIED: not the agent's user or root; UNAVAILABLE: no agent there, or the
// coordinator could not be told).
absl::StatusOr<std::string> RunLeaveCommand(const std::string& reason, const ClusterTarget& target,
                                            bool json);

// Renderers, exposed for tests.
std::string RenderStatus(const v1::CoordinatorStatus& s, const std::string& address);
std::string RenderAgentStatus(const v1::AgentStatus& s, const std::string& address);
std::string RenderNodes(const v1::ListNodesResponse& nodes);
std::string RenderJobs(const v1::ListJobsResponse& jobs);
std::string RenderJob(const v1::JobStatus& job);

}  // namespace meshd::ctl

#endif  // MESHD_DAEMON_CTL_CLUSTER_COMMANDS_H_
