// CoordinatorDaemon: a running coordinator — core, gRPC service and server, deadline ticker, and
// state-transition logging. Used by `meshd coordinator`, `meshd standalone` and tests.
//
// Thread-safety: Stop() is thread-safe and idempotent.
#ifndef MESHD_DAEMON_RUNTIME_COORDINATOR_DAEMON_H_
#define MESHD_DAEMON_RUNTIME_COORDINATOR_DAEMON_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "daemon/coordinator/coordinator.h"
#include "daemon/metrics/coordinator_metrics.h"
#include "daemon/metrics/metrics_server.h"
#include "daemon/security/tls_credentials.h"
#include "daemon/service/admin_service.h"
#include "daemon/service/coordinator_service.h"
#include "daemon/service/grpc_server.h"
#include "daemon/service/ticker.h"

namespace meshd::runtime {

struct CoordinatorDaemonOptions {
  // Loopback by default: a plaintext coordinator is for this host only (see `insecure`).
  std::string listen = "127.0.0.1:7070";
  // Mutual TLS on the listener (client certificates of the CA required), the files re-read every
  // `tls_refresh`. Empty: plaintext.
  security::TlsFiles tls;
  absl::Duration tls_refresh = security::kDefaultRefresh;
  // Serve plaintext on an address other hosts can reach (refused otherwise: FAILED_PRECONDITION);
  // logged as a warning, and meshd_insecure is 1 on `metrics`.
  bool insecure = false;
  // Who may use the admin calls (meshd.v1.Admin): patterns of operators' certificates, see
  // security::AdminPolicy. Without TLS, callers on this host.
  std::vector<std::string> admin_identities;
  // A file holding the key membership tokens are signed with (created when absent; see
  // security/membership_key.h). With it, a restarted coordinator recovers a running generation
  // only from the places it gave; empty: it takes the agents' reports on trust.
  std::string membership_key;
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration heartbeat_timeout = absl::Seconds(5);
  uint32_t max_heartbeats_per_second = 2000;  // see CoordinatorOptions
  absl::Duration recovery_window = absl::Seconds(10);  // see CoordinatorOptions
  absl::Duration node_retention = absl::Minutes(10);  // see CoordinatorOptions
  absl::Duration job_retention = absl::Minutes(10);   // see CoordinatorOptions
  coordinator::KvStore::Limits kv_limits;             // see CoordinatorOptions
  absl::Duration round_timeout = absl::Minutes(10);   // see CoordinatorOptions
  // How often deadlines are checked; bounds how late a failure is noticed past the timeout.
  absl::Duration tick = absl::Milliseconds(100);
  // Not owned; outlives the daemon. When set, the coordinator's series and its gRPC calls are
  // served there (see daemon/metrics).
  metrics::MetricsServer* metrics = nullptr;
  // The coordinator's time (heartbeat expiry, waits' deadlines, uptime), for the core and the
  // service. Not owned; outlives the daemon. nullptr: a RealClock the daemon owns. Tests pass a
  // FakeClock and advance it: the ticker still runs in real time and acts on the clock's time.
  const Clock* clock = nullptr;
};

class CoordinatorDaemon {
 public:
  // Errors: INVALID_ARGUMENT bad options, TLS files (the message names the file) or admin
  // identities;
  // FAILED_PRECONDITION plaintext on a non-loopback address without `insecure`; UNAVAILABLE the
  // address could not be bound.
  static absl::StatusOr<std::unique_ptr<CoordinatorDaemon>> Start(
      const CoordinatorDaemonOptions& options);
  ~CoordinatorDaemon() { Stop(); }

  // "127.0.0.1:41235": the bound address, port resolved.
  const std::string& address() const { return server_->addresses()[0]; }
  coordinator::Coordinator& core() { return *core_; }
  service::GrpcServer& server() { return *server_; }
  // Orderly: health NOT_SERVING, waits cancelled, server stopped, ticker joined.
  void Stop();

 private:
  CoordinatorDaemon() = default;

  RealClock real_clock_;
  const Clock* clock_ = &real_clock_;  // options.clock, or real_clock_
  std::unique_ptr<coordinator::Coordinator> core_;
  std::unique_ptr<service::CoordinatorService> service_;
  std::unique_ptr<service::AdminService> admin_service_;
  std::unique_ptr<service::GrpcServer> server_;
  std::unique_ptr<service::Ticker> ticker_;
  metrics::MetricsServer* metrics_ = nullptr;
  std::shared_ptr<metrics::CoordinatorMetrics> collector_;
};

}  // namespace meshd::runtime

#endif  // MESHD_DAEMON_RUNTIME_COORDINATOR_DAEMON_H_
