// HTTPS GET with OpenSSL (see tls_scrape.h).
#include "tests/support/tls_scrape.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace meshd::testing {
namespace {

struct FreeCtx {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct FreeSsl {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct Socket {
  ~Socket() {
    if (fd >= 0) close(fd);
  }
  int fd;
};

// OpenSSL's last error on this thread, as text ("" when none), and the queue cleared.
std::string OpenSslError() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out;
}

// A non-blocking TCP connection to `host`:`port` made within `deadline`, or -1.
int Connect(const std::string& host, const std::string& port, absl::Time deadline) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return -1;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof error;
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (errno != EINPROGRESS || left <= 0 || poll(&p, 1, static_cast<int>(left)) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

enum class Io { kDone, kFailed, kTimedOut };

// Runs `op` (an SSL call on a non-blocking socket) until it succeeds, fails or `deadline` passes.
template <typename Op>
Io Run(SSL* ssl, int fd, absl::Time deadline, Op op, int* result) {
  while (true) {
    *result = op();
    if (*result > 0) return Io::kDone;
    const int e = SSL_get_error(ssl, *result);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return Io::kFailed;
    pollfd p{fd, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) return Io::kTimedOut;
  }
}

std::string SerialOf(SSL* ssl) {
  X509* peer = SSL_get1_peer_certificate(ssl);
  if (peer == nullptr) return "";
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), nullptr);
  char* hex = bn != nullptr ? BN_bn2hex(bn) : nullptr;
  std::string out = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  X509_free(peer);
  return out;
}

}  // namespace

absl::StatusOr<HttpResponse> HttpsGet(const std::string& host_port, const std::string& path,
                                      const TlsClient& client, absl::Duration timeout,
                                      std::string* served_serial) {
  const absl::Time deadline = absl::Now() + timeout;
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("want HOST:PORT");
  const std::string host = host_port.substr(0, colon);

  ERR_clear_error();
  std::unique_ptr<SSL_CTX, FreeCtx> ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr ||
      SSL_CTX_load_verify_locations(ctx.get(), client.ca.c_str(), nullptr) != 1 ||
      (!client.cert.empty() &&
       (SSL_CTX_use_certificate_chain_file(ctx.get(), client.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx.get(), client.key.c_str(), SSL_FILETYPE_PEM) != 1))) {
    return absl::InvalidArgumentError(absl::StrCat("client TLS files: ", OpenSslError()));
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);  // a close is the answer's end

  const Socket conn{Connect(host, host_port.substr(colon + 1), deadline)};
  if (conn.fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to ", host_port));
  const int fd = conn.fd;
  std::unique_ptr<SSL, FreeSsl> ssl(SSL_new(ctx.get()));  // freed before the socket closes
  in6_addr ip;
  const bool is_ip = inet_pton(AF_INET, host.c_str(), &ip) == 1 ||
                     inet_pton(AF_INET6, host.c_str(), &ip) == 1;
  const bool named =
      ssl != nullptr &&
      (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), host.c_str()) == 1
             : SSL_set1_host(ssl.get(), host.c_str()) == 1 &&
                   SSL_set_tlsext_host_name(ssl.get(), host.c_str()) == 1);
  if (!named || SSL_set_fd(ssl.get(), fd) != 1) {
    return absl::InternalError(absl::StrCat("TLS setup: ", OpenSslError()));
  }

  int n = 0;
  auto fail = [&](Io io, const char* what) -> absl::Status {
    if (io == Io::kTimedOut) {
      return absl::DeadlineExceededError(absl::StrCat("no full answer from ", host_port));
    }
    const std::string error = OpenSslError();
    return absl::UnavailableError(absl::StrCat(what, " with ", host_port, " failed: ",
                                               error.empty() ? "closed with no answer" : error));
  };
  if (Io io = Run(ssl.get(), fd, deadline, [&] { return SSL_connect(ssl.get()); }, &n);
      io != Io::kDone) {
    return fail(io, "TLS handshake");
  }
  if (served_serial != nullptr) *served_serial = SerialOf(ssl.get());
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host_port,
                                           "\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
  if (Io io = Run(ssl.get(), fd, deadline,
                  [&] { return SSL_write(ssl.get(), request.data(), request.size()); }, &n);
      io != Io::kDone) {
    return fail(io, "sending the request");
  }
  // With TLS 1.3 the server checks the client's certificate after the client's side of the
  // handshake is done: a refusal shows here, as an alert instead of an answer.
  std::string raw;
  char buf[65536];
  while (true) {
    const Io io = Run(ssl.get(), fd, deadline, [&] { return SSL_read(ssl.get(), buf, sizeof buf); },
                      &n);
    if (io == Io::kDone) {
      raw.append(buf, n);
      continue;
    }
    if (io == Io::kTimedOut) return fail(io, "");
    if (SSL_get_error(ssl.get(), n) == SSL_ERROR_ZERO_RETURN && !raw.empty()) break;
    return fail(io, "reading the answer");
  }
  return ParseHttpResponse(raw);
}

absl::StatusOr<std::map<std::string, double>> ScrapeTls(const std::string& url,
                                                        const TlsClient& client) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "https://")) return absl::InvalidArgumentError("want https://");
  const size_t slash = rest.find('/');
  const std::string host_port(rest.substr(0, slash));
  const std::string path(slash == absl::string_view::npos ? "/" : rest.substr(slash));
  absl::StatusOr<HttpResponse> r = HttpsGet(host_port, path, client);
  if (!r.ok()) return r.status();
  if (r->status != 200) return absl::InternalError(absl::StrCat("HTTP ", r->status));
  if (!absl::StartsWith(r->content_type, "text/plain")) {
    return absl::InternalError(absl::StrCat("content type '", r->content_type, "'"));
  }
  return ParseExposition(r->body);
}

}  // namespace meshd::testing
