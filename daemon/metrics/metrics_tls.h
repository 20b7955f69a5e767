// MetricsTls: the certificates of the metrics port's mutual TLS (HttpsEndpoint). That port is not
// gRPC, so gRPC's file-watching certificate provider cannot serve it; this sets up its OpenSSL
// context the same way instead. Every handshake is served from the files as last read: a
// certificate callback installs the certificate (chain), the key and the CA that client
// certificates must chain to, and re-reads the three files when `refresh` has passed since it
// last did. Replaced files (rename them into place, key first) serve the next connection, with no
// restart; files that do not make a pair (a key that is not the certificate's, say, read between
// two renames) are not used — the previous ones are kept, and the files are read again at the
// next refresh.
//
// Clients must present a certificate that chains to the CA (a missing one or another CA's ends
// the handshake); TLS 1.2 or later; no session resumption, so that every connection is checked
// against the current CA.
//
// Thread-safety: thread-safe; the callback runs on the endpoint's threads.
#ifndef MESHD_DAEMON_METRICS_METRICS_TLS_H_
#define MESHD_DAEMON_METRICS_METRICS_TLS_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/security/tls_credentials.h"

struct ssl_st;  // OpenSSL's SSL

namespace meshd::metrics {

class MetricsTls {
 public:
  // Reads the files now. `refresh` is at least 1 s. Errors: INVALID_ARGUMENT naming the flag and
  // the file (cannot be read, no certificate, no private key, the key is not the certificate's).
  static absl::StatusOr<std::shared_ptr<MetricsTls>> Create(const security::TlsFiles& files,
                                                            absl::Duration refresh);
  ~MetricsTls();

  // Sets up `ssl_ctx` (an SSL_CTX*) as above; this object must outlive it. False when OpenSSL
  // refuses a setting.
  bool Configure(void* ssl_ctx);

  struct Material;  // one read of the three files (metrics_tls.cc)

 private:
  MetricsTls(const security::TlsFiles& files, absl::Duration refresh,
             std::shared_ptr<const Material> material);

  // The material to serve a handshake with, the files read again first when `refresh_` has
  // passed since the last read.
  std::shared_ptr<const Material> Current();
  static int OnCertificate(ssl_st* ssl, void* self);

  const security::TlsFiles files_;
  const absl::Duration refresh_;
  absl::Mutex mu_;
  std::shared_ptr<const Material> material_ ABSL_GUARDED_BY(mu_);
  absl::Time next_read_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);  // logged once, not at every refresh
};

}  // namespace meshd::metrics

#endif  // MESHD_DAEMON_METRICS_METRICS_TLS_H_
