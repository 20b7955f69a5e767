// HttpsEndpoint (see https_endpoint.h).
#include "daemon/metrics/https_endpoint.h"

#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/log/log.h"

namespace meshd::metrics {
namespace {

constexpr absl::Duration kConnectionDeadline = absl::Seconds(10);
constexpr size_t kMaxWaiting = 64;
constexpr size_t kMaxRequestHead = 16 * 1024;
constexpr int kThreads = 2;

struct FreeSsl {
  void operator()(SSL* s) const { SSL_free(s); }
};

std::string OpenSslError() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out;
}

enum class Io { kDone, kFailed, kTimedOut };

// Runs `op` (an SSL call on the non-blocking `fd`) until it succeeds, fails, `deadline` passes
// or `stop_fd` becomes readable.
template <typename Op>
Io Run(SSL* ssl, int fd, int stop_fd, absl::Time deadline, Op op, int* result) {
  while (true) {
    *result = op();
    if (*result > 0) return Io::kDone;
    const int e = SSL_get_error(ssl, *result);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return Io::kFailed;
    pollfd p[2] = {{fd, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0},
                   {stop_fd, POLLIN, 0}};
    const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0 || poll(p, 2, static_cast<int>(left)) <= 0 || p[1].revents != 0) {
      return Io::kTimedOut;
    }
  }
}

std::string Answer(int status, absl::string_view reason, absl::string_view content_type,
                   absl::string_view body) {
  return absl::StrCat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

// SIGPIPE stays pending on an endpoint thread instead of ending the process when a client has
// gone: its write fails with EPIPE.
void BlockSigpipe() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpsEndpoint>> HttpsEndpoint::Start(
    const std::string& listen, std::shared_ptr<MetricsTls> tls, Render render) {
  std::unique_ptr<HttpsEndpoint> e(new HttpsEndpoint());
  e->tls_ = std::move(tls);
  e->render_ = std::move(render);
  e->ctx_ = {SSL_CTX_new(TLS_server_method()), SSL_CTX_free};
  if (e->ctx_ == nullptr || !e->tls_->Configure(e->ctx_.get())) {
    return absl::InternalError(absl::StrCat("metrics TLS context: ", OpenSslError()));
  }

  const size_t colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int r = getaddrinfo(host.c_str(), listen.substr(colon + 1).c_str(), &hints, &found);
      r != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", listen, "': ", gai_strerror(r)));
  }
  e->listen_fd_ = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  const bool bound = e->listen_fd_ >= 0 &&
                     setsockopt(e->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
                     bind(e->listen_fd_, found->ai_addr, found->ai_addrlen) == 0 &&
                     ::listen(e->listen_fd_, 64) == 0;
  const int bind_errno = errno;
  freeaddrinfo(found);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (!bound || getsockname(e->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ",
                                               std::strerror(bind_errno)));
  }
  e->port_ = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  e->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (e->stop_fd_ < 0) return absl::InternalError("eventfd failed");
  e->threads_.emplace_back([raw = e.get()] { raw->Accept(); });
  for (int i = 0; i < kThreads; ++i) e->threads_.emplace_back([raw = e.get()] { raw->Work(); });
  return e;
}

HttpsEndpoint::~HttpsEndpoint() {
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof one);  // wakes every poll, for good
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
  for (int fd : accepted_) close(fd);
  if (listen_fd_ >= 0) close(listen_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void HttpsEndpoint::Accept() {
  BlockSigpipe();
  while (true) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[1].revents != 0) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        pollfd stop{stop_fd_, POLLIN, 0};
        poll(&stop, 1, 100);  // out of descriptors or memory: let it pass rather than spin
      }
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (accepted_.size() >= kMaxWaiting) {
      close(fd);
    } else {
      accepted_.push_back(fd);
    }
  }
}

void HttpsEndpoint::Work() {
  BlockSigpipe();
  while (true) {
    int fd = -1;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !accepted_.empty();
      };
      mu_.Await(absl::Condition(&ready));  // idle until a connection comes or the endpoint stops
      if (stopping_) return;
      fd = accepted_.front();
      accepted_.pop_front();
    }
    Serve(fd);
    close(fd);
  }
}

void HttpsEndpoint::Serve(int fd) {
  const absl::Time deadline = absl::Now() + kConnectionDeadline;
  ERR_clear_error();
  std::unique_ptr<SSL, FreeSsl> ssl(SSL_new(ctx_.get()));
  if (ssl == nullptr || SSL_set_fd(ssl.get(), fd) != 1) return;
  int n = 0;
  if (Run(ssl.get(), fd, stop_fd_, deadline, [&] { return SSL_accept(ssl.get()); }, &n) !=
      Io::kDone) {
    // A plaintext client, one without a certificate of the CA, or a slow one: refused.
    log::Debug("metrics: TLS handshake failed", {{"error", OpenSslError()}});
    return;
  }
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() <= kMaxRequestHead) {
    if (Run(ssl.get(), fd, stop_fd_, deadline, [&] { return SSL_read(ssl.get(), buf, sizeof buf); },
            &n) != Io::kDone) {
      return;
    }
    head.append(buf, n);
  }
  std::string answer;
  const std::vector<absl::string_view> request_line =
      absl::StrSplit(absl::string_view(head).substr(0, head.find("\r\n")), ' ');
  if (head.size() > kMaxRequestHead || request_line.size() != 3 ||
      !absl::StartsWith(request_line[2], "HTTP/1.")) {
    answer = Answer(400, "Bad Request", "text/plain", "bad request\n");
  } else if (request_line[0] != "GET" && request_line[0] != "HEAD") {
    answer = Answer(405, "Method Not Allowed", "text/plain", "only GET\n");
  } else if (request_line[1].substr(0, request_line[1].find('?')) != "/metrics") {
    answer = Answer(404, "Not Found", "text/plain", "metrics are at /metrics\n");
  } else {
    answer = Answer(200, "OK", "text/plain; version=0.0.4; charset=utf-8", render_());
    if (request_line[0] == "HEAD") answer.resize(answer.find("\r\n\r\n") + 4);
  }
  if (Run(ssl.get(), fd, stop_fd_, deadline,
          [&] { return SSL_write(ssl.get(), answer.data(), static_cast<int>(answer.size())); },
          &n) == Io::kDone) {
    SSL_shutdown(ssl.get());  // close_notify; the client's is not waited for
  }
  ERR_clear_error();
}

}  // namespace meshd::metrics
