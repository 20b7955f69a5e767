// MetricsServer: the Prometheus scrape endpoint, `GET /metrics` over HTTP/1.1 (prometheus-cpp's
// exposer), or over mutual TLS when given the daemon's certificate files (HTTPS only: the client
// must present a certificate of the CA; MetricsTls re-reads the files). One per process: in
// `meshd standalone` the coordinator and the agent register their collectors on the same one. It
// also owns the process's gRPC call metrics (see RpcMetrics), since both daemons' servers count
// into the same series, told apart by their `server` label.
//
// Thread-safety: all methods are thread-safe. A collector removed with Remove() is no longer
// called once Remove() returns (the exposer collects under the lock Remove takes).
#ifndef MESHD_DAEMON_METRICS_METRICS_SERVER_H_
#define MESHD_DAEMON_METRICS_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/metrics/rpc_metrics.h"
#include "daemon/security/tls_credentials.h"
#include "prometheus/collectable.h"

namespace prometheus {
class Exposer;
}

namespace meshd::metrics {

class HttpsEndpoint;
class InsecureGauge;

class MetricsServer {
 public:
  // `listen` is "HOST:PORT" (port 0 picks a free one), "[IPv6]:PORT" where SupportsIpv6(). With
  // `tls` (all three files) it serves HTTPS only and requires a client certificate that chains to
  // `tls.ca`; the files are re-read every `tls_refresh` (at least 1 s) and new connections get
  // what they hold. Errors: INVALID_ARGUMENT a malformed address, an IPv6 one this build cannot
  // serve, or a TLS file that cannot be used (naming the flag and the file); UNAVAILABLE it could
  // not be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, const security::TlsFiles& tls = {},
      absl::Duration tls_refresh = security::kDefaultRefresh);
  // Whether civetweb (the HTTP server under prometheus-cpp) has IPv6; Debian 12's has not.
  static bool SupportsIpv6();
  ~MetricsServer();

  // "127.0.0.1:9464", the port resolved.
  const std::string& address() const { return address_; }
  // "https://127.0.0.1:9464/metrics" with TLS, "http://..." without.
  std::string url() const { return (tls() ? "https://" : "http://") + address_ + "/metrics"; }
  bool tls() const { return https_ != nullptr; }

  // Adds a collector to every scrape until Remove(); the server holds it until then.
  void Add(std::shared_ptr<prometheus::Collectable> collector);
  void Remove(const std::shared_ptr<prometheus::Collectable>& collector);

  RpcMetrics& rpc() { return *rpc_; }

  // meshd_insecure: 1 while this process serves plaintext TCP that other hosts can reach (it was
  // started with --insecure), 0 otherwise (TLS, or plaintext on loopback only). 0 until set.
  void SetInsecure(bool insecure);

 private:
  MetricsServer() = default;

  // The text of a scrape: every held collector's families (the TLS endpoint's answer).
  std::string Render();

  std::unique_ptr<prometheus::Exposer> exposer_;  // plain HTTP
  std::unique_ptr<HttpsEndpoint> https_;          // or mutual TLS
  std::string address_;
  std::shared_ptr<RpcMetrics> rpc_;
  std::shared_ptr<InsecureGauge> insecure_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshd::metrics

#endif  // MESHD_DAEMON_METRICS_METRICS_SERVER_H_
