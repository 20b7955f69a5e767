// Mutual TLS from PEM files: the credentials of every meshd TCP listener and of every channel to
// one (agent -> coordinator, meshctl -> coordinator). Both read their certificate, key and CA
// through gRPC's FileWatcherCertificateProvider, which re-reads the files every
// `refresh` interval: replacing them (atomically — rename into place) rotates the identity and the
// trusted CA for new handshakes with no restart; established connections keep theirs.
//
// gRPC's provider only logs when a file cannot be read, and every handshake then fails with no
// hint why; so the files are checked here first and a bad one is an INVALID_ARGUMENT naming it.
//
// Thread-safety: free functions; the credentials they return are safe to share.
#ifndef MESHD_DAEMON_SECURITY_TLS_CREDENTIALS_H_
#define MESHD_DAEMON_SECURITY_TLS_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace meshd::security {

// Paths of PEM files. All three or none: empty = plaintext.
struct TlsFiles {
  std::string cert;  // this process's certificate (chain), leaf first
  std::string key;   // its private key
  std::string ca;    // the CA bundle peers' certificates must chain to
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

// How often the files are re-read by default.
inline constexpr absl::Duration kDefaultRefresh = absl::Seconds(10);

// OK when none or all three are given and each is a readable PEM file of the right kind
// (certificate, private key, certificate). Errors: INVALID_ARGUMENT naming the flag and the file
// and saying what is wrong (some but not all given; missing; unreadable; not PEM; no certificate;
// no private key). Does not check that the key matches the certificate (gRPC refuses the pair).
absl::Status ValidateTlsFiles(const TlsFiles& files);

// Server credentials that present `files.cert` and require every client to present a certificate
// that chains to `files.ca` (mutual TLS). `refresh` is rounded up to whole seconds, at least 1 s.
// Errors: those of ValidateTlsFiles.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MutualTlsServerCredentials(
    const TlsFiles& files, absl::Duration refresh = kDefaultRefresh);

// Channel credentials that present `files.cert` as the client's certificate and accept a server
// whose certificate chains to `files.ca` and names the host dialled (a DNS or IP SAN).
// Errors: those of ValidateTlsFiles.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MutualTlsChannelCredentials(
    const TlsFiles& files, absl::Duration refresh = kDefaultRefresh);

// Plaintext when `files` is empty, else MutualTls*Credentials.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsFiles& files, absl::Duration refresh = kDefaultRefresh);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsFiles& files, absl::Duration refresh = kDefaultRefresh);

}  // namespace meshd::security

#endif  // MESHD_DAEMON_SECURITY_TLS_CREDENTIALS_H_
