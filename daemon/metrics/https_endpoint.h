// HttpsEndpoint: the metrics port over mutual TLS — a minimal HTTP/1.1 server of meshd's own,
// with OpenSSL linked as usual. Not civetweb's TLS: Debian 12's civetweb (under prometheus-cpp)
// loads OpenSSL 3 by dlopen but looks up the 1.1 name SSL_get_peer_certificate, which OpenSSL 3
// no longer exports, and calls the null pointer after every successful handshake.
//
// It answers `GET /metrics` (a query string is ignored) with the text `render` returns, 404 any
// other path and 405 any other method; one request per connection (`Connection: close`), as
// Prometheus reconnects. The handshake and the request must be done within 10 s; two threads
// serve connections, and connections past 64 waiting are closed unanswered. MetricsTls sets up the
// TLS context: a client certificate of the CA is required, the files are re-read on rotation.
//
// Thread-safety: `render` is called on the endpoint's threads, one call at a time per thread. The
// destructor stops serving: no call of `render` runs once it returns.
#ifndef MESHD_DAEMON_METRICS_HTTPS_ENDPOINT_H_
#define MESHD_DAEMON_METRICS_HTTPS_ENDPOINT_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/metrics/metrics_tls.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace meshd::metrics {

class HttpsEndpoint {
 public:
  using Render = std::function<std::string()>;

  // Binds `listen` ("HOST:PORT", port 0 a free one) and serves. Errors: INVALID_ARGUMENT a host
  // that does not resolve; UNAVAILABLE it could not be bound; INTERNAL OpenSSL refused the
  // context.
  static absl::StatusOr<std::unique_ptr<HttpsEndpoint>> Start(const std::string& listen,
                                                              std::shared_ptr<MetricsTls> tls,
                                                              Render render);
  ~HttpsEndpoint();

  int port() const { return port_; }

 private:
  HttpsEndpoint() = default;

  void Accept();
  void Work();
  void Serve(int fd);

  std::shared_ptr<MetricsTls> tls_;  // outlives ctx_, whose handshakes call it
  std::unique_ptr<ssl_ctx_st, void (*)(ssl_ctx_st*)> ctx_{nullptr, nullptr};
  Render render_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd, readable once the destructor runs: every poll watches it
  int port_ = 0;
  absl::Mutex mu_;
  std::deque<int> accepted_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace meshd::metrics

#endif  // MESHD_DAEMON_METRICS_HTTPS_ENDPOINT_H_
