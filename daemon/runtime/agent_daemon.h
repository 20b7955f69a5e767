// AgentDaemon: a running node agent — GPU discovery, the agent's core over a gRPC coordinator
// client, its gRPC service on a unix socket, and the ticker that drives the core's time. Used by `meshd agent`, `meshd standalone` and tests.
//
// Thread-safety: Stop() and Leave() are thread-safe; Stop() is idempotent.
#ifndef MESHD_DAEMON_RUNTIME_AGENT_DAEMON_H_
#define MESHD_DAEMON_RUNTIME_AGENT_DAEMON_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/time/clock.h"
#include "daemon/agent/core/agent.h"
#include "daemon/agent/transport/grpc_coordinator_client.h"
#include "daemon/metrics/metrics_server.h"
#include "daemon/security/tls_credentials.h"
#include "daemon/service/agent_service.h"
#include "daemon/service/grpc_server.h"
#include "daemon/service/ticker.h"

namespace meshd::runtime {

struct AgentDaemonOptions {
  std::string coordinator = "127.0.0.1:7070";
  std::string socket = "/run/meshd/agent.sock";
  // The group the socket is given (mode 0660: its members may attach); empty: the daemon's own.
  std::string socket_group;
  // A job is bound to the uid of its first local worker; these uids may also use it.
  std::vector<uint32_t> allow_uids;
  // > 0: declare this many simulated GPUs instead of asking NVML.
  int simulate_gpus = 0;
  std::string node_name;  // default: the hostname
  // The hostname reported to the coordinator, which orders a job's nodes by it (after the NVLink
  // domain). Default: gethostname(), in a pod the pod's name: a DaemonSet sets spec.nodeName.
  std::string hostname;
  std::string nvml_library = "libnvidia-ml.so.1";
  // Not owned; outlives the daemon. When set, the agent's series and its gRPC calls are served
  // there (see daemon/metrics).
  metrics::MetricsServer* metrics = nullptr;
  // "HOST:PORT": also serve grpc.health.v1.Health (and nothing else) on TCP, for probes that
  // cannot reach a unix socket (Kubernetes' native gRPC probes). Empty: off.
  std::string health_listen;
  // Mutual TLS: the agent's certificate (its node's) for the channel to the coordinator and for
  // the health port, which then requires client certificates of the CA too. Re-read every
  // `tls_refresh`. Empty: plaintext. The unix socket is always plaintext.
  security::TlsFiles tls;
  absl::Duration tls_refresh = security::kDefaultRefresh;
  // Serve the health port in plaintext on an address other hosts can reach (refused otherwise).
  bool insecure = false;
  // The agent's time (deadlines, heartbeats, backoff); nullptr: the real clock. Not owned.
  const Clock* clock = nullptr;
};

class AgentDaemon {
 public:
  // Errors: INVALID_ARGUMENT a node name or hostname that is not 1-253 letters, digits, '.', '_'
  // or '-'; FAILED_PRECONDITION no GPU could be discovered and none was simulated (the message
  // says to pass --simulate-gpus N); INVALID_ARGUMENT bad options or TLS files (the message names
  // the file); FAILED_PRECONDITION a plaintext health port on a non-loopback address without
  // `insecure`; UNAVAILABLE the socket (or the health port) could not be bound, or a file that
  // is not a socket is in its place; FAILED_PRECONDITION another process (another agent) serves
  // on the socket (a stale socket file is replaced), or the socket could not be given to
  // `socket_group`; INVALID_ARGUMENT no group is named `socket_group`.
  static absl::StatusOr<std::unique_ptr<AgentDaemon>> Start(const AgentDaemonOptions& options);
  ~AgentDaemon() { Stop(); }

  // "unix:/run/meshd/agent.sock"
  const std::string& address() const { return server_->addresses()[0]; }
  // "0.0.0.0:7071" with the port resolved, or "" without --health-listen.
  std::string health_address() const {
    return health_server_ ? health_server_->addresses()[0] : "";
  }
  agent::Agent& agent() { return *agent_; }
  // The node leaves the cluster before the agent stops (meshd.v1.Agent/Leave; the PreStop hook):
  // the local workers are told, the coordinator is told (LeaveNode: the node's jobs end their
  // generations with NODE_LEFT) and, once it answered, the agent stops talking to it (no
  // heartbeat re-registers the node) while its socket keeps answering GetStatus until Stop.
  // `done` gets what changed. Errors: UNAVAILABLE or DEADLINE_EXCEEDED the coordinator was not
  // told (Stop tries again); CANCELLED the daemon stopped meanwhile.
  void Leave(const std::string& reason, std::function<void(absl::StatusOr<v1::LeaveResponse>)> done);
  void Stop();

 private:
  AgentDaemon() = default;
  // Stop's LeaveNode, waited for at most 3 s (a coordinator that does not answer then notices the
  // silence at its heartbeat timeout).
  void DepartOnStop();

  // Set once the coordinator was told the node leaves (or there was no one to tell): the ticker
  // no longer drives the agent and Stop sends no second LeaveNode. First, so that it outlives the
  // client whose callbacks set it.
  std::atomic<bool> left_{false};

  RealClock real_clock_;
  const Clock* clock_ = &real_clock_;
  std::unique_ptr<agent::GrpcCoordinatorClient> client_;
  std::unique_ptr<agent::Agent> agent_;
  // The credentials of the socket's connections; read by service_, written by server_.
  service::UnixPeers peers_;
  std::unique_ptr<service::AgentService> service_;
  std::unique_ptr<service::GrpcServer> server_;
  std::unique_ptr<service::GrpcServer> health_server_;
  std::unique_ptr<service::Ticker> ticker_;
  metrics::MetricsServer* metrics_ = nullptr;
  std::shared_ptr<prometheus::Collectable> collector_;
};

// The host's name (gethostname), or "localhost".
std::string HostName();

}  // namespace meshd::runtime

#endif  // MESHD_DAEMON_RUNTIME_AGENT_DAEMON_H_
