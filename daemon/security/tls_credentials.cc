// Mutual-TLS credentials (see tls_credentials.h).
#include "daemon/security/tls_credentials.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace meshd::security {
namespace {

// PEM is at most a few hundred KiB even for long chains; anything past this is not one.
constexpr std::streamsize kMaxPemBytes = 1 << 20;

enum class Kind { kCertificate, kPrivateKey };

absl::Status CheckPemFile(const char* flag, const std::string& path, Kind kind) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a path"));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot read it (", std::strerror(errno), ")"));
  }
  std::string text(kMaxPemBytes + 1, '\0');
  in.read(text.data(), kMaxPemBytes + 1);
  text.resize(in.gcount());
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": cannot read it"));
  }
  if (text.size() > static_cast<size_t>(kMaxPemBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": larger than 1 MiB, not a PEM file"));
  }
  if (!absl::StrContains(text, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path, ": not a PEM file (no '-----BEGIN' line; DER must be converted: ",
        "openssl x509 -inform der -in FILE -out FILE.pem)"));
  }
  if (kind == Kind::kCertificate && !absl::StrContains(text, "-----BEGIN CERTIFICATE-----")) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": holds no certificate ('-----BEGIN CERTIFICATE-----')"));
  }
  if (kind == Kind::kPrivateKey &&
      !(absl::StrContains(text, "PRIVATE KEY-----") &&
        absl::StrContains(text, "-----BEGIN "))) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path, ": holds no private key ('-----BEGIN ... PRIVATE KEY-----')"));
  }
  if (kind == Kind::kPrivateKey && (absl::StrContains(text, "-----BEGIN ENCRYPTED PRIVATE KEY") ||
                                    absl::StrContains(text, "Proc-Type: 4,ENCRYPTED"))) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path, ": the private key is encrypted; meshd needs it unencrypted ",
        "(readable only by meshd's user)"));
  }
  return absl::OkStatus();
}

unsigned RefreshSeconds(absl::Duration refresh) {
  const int64_t s = absl::ToInt64Seconds(absl::Ceil(refresh, absl::Seconds(1)));
  return static_cast<unsigned>(std::clamp<int64_t>(s, 1, 24 * 3600));
}

std::shared_ptr<grpc::experimental::CertificateProviderInterface> Provider(
    const TlsFiles& files, absl::Duration refresh) {
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key, files.cert, files.ca, RefreshSeconds(refresh));
}

}  // namespace

absl::Status ValidateTlsFiles(const TlsFiles& files) {
  if (!files.enabled()) return absl::OkStatus();
  if (files.cert.empty() || files.key.empty() || files.ca.empty()) {
    std::string missing;
    for (const auto& [flag, value] : {std::pair{"--tls-cert", &files.cert},
                                      std::pair{"--tls-key", &files.key},
                                      std::pair{"--tls-ca", &files.ca}}) {
      if (value->empty()) absl::StrAppend(&missing, missing.empty() ? "" : ", ", flag);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS needs all three of --tls-cert, --tls-key and --tls-ca (MESHD_TLS_CERT, ",
        "MESHD_TLS_KEY, MESHD_TLS_CA); missing: ", missing));
  }
  if (absl::Status s = CheckPemFile("--tls-cert", files.cert, Kind::kCertificate); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPemFile("--tls-key", files.key, Kind::kPrivateKey); !s.ok()) return s;
  return CheckPemFile("--tls-ca", files.ca, Kind::kCertificate);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MutualTlsServerCredentials(
    const TlsFiles& files, absl::Duration refresh) {
  if (!files.enabled()) return absl::InvalidArgumentError("no TLS files given");
  if (absl::Status s = ValidateTlsFiles(files); !s.ok()) return s;
  grpc::experimental::TlsServerCredentialsOptions options(Provider(files, refresh));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MutualTlsChannelCredentials(
    const TlsFiles& files, absl::Duration refresh) {
  if (!files.enabled()) return absl::InvalidArgumentError("no TLS files given");
  if (absl::Status s = ValidateTlsFiles(files); !s.ok()) return s;
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Provider(files, refresh));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  // The server's certificate must chain to the CA and, with no verifier set, name the host
  // dialled (gRPC's default hostname check on the client side).
  options.set_verify_server_certs(true);
  return grpc::experimental::TlsCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsFiles& files, absl::Duration refresh) {
  if (!files.enabled()) return grpc::InsecureServerCredentials();
  return MutualTlsServerCredentials(files, refresh);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsFiles& files, absl::Duration refresh) {
  if (!files.enabled()) return grpc::InsecureChannelCredentials();
  return MutualTlsChannelCredentials(files, refresh);
}

}  // namespace meshd::security
